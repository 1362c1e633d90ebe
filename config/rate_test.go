package config

import (
	"errors"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
	}{
		{"50/s", Rate{50, time.Second}},
		{"600/m", Rate{600, time.Minute}},
		{"3600/h", Rate{3600, time.Hour}},
		{"10/100ms", Rate{10, 100 * time.Millisecond}},
		{"5/ms", Rate{5, time.Millisecond}},
		{"1/1m30s", Rate{1, 90 * time.Second}},
		{"7/minute", Rate{7, time.Minute}},
		{"7/Sec", Rate{7, time.Second}},
		{" 50 / s ", Rate{50, time.Second}},
		{"0", Rate{}},
		{"unlimited", Rate{}},
		{"Unlimited", Rate{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if err != nil {
				t.Fatalf("ParseRate(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseRate(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseRateErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "count/interval"},
		{"50", "count/interval"},
		{"/s", "whole number"},
		{"-5/s", "whole number"},
		{"1.5/s", "whole number"},
		{"0/s", "unlimited"},
		{"5/", "interval"},
		{"5/0s", "positive"},
		{"5/-1s", "interval"},
		{"5/fortnight", "interval"},
		{"5/s/s", "interval"},
		{"3000000000/s", "at most"},
		{"99999999999999999999/s", "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseRate(tt.in)
			if !errors.Is(err, ErrInvalidRate) {
				t.Fatalf("ParseRate(%q) error = %v, want ErrInvalidRate", tt.in, err)
			}
			if !contains(err.Error(), tt.want) {
				t.Fatalf("ParseRate(%q) error = %q, want it to mention %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestRateString(t *testing.T) {
	tests := []struct {
		in   Rate
		want string
	}{
		{Rate{50, time.Second}, "50/s"},
		{Rate{600, time.Minute}, "600/m"},
		{Rate{1, time.Hour}, "1/h"},
		{Rate{10, 100 * time.Millisecond}, "10/100ms"},
		{Rate{3, 90 * time.Second}, "3/1m30s"},
		{Rate{}, "unlimited"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRatePerSecond(t *testing.T) {
	tests := []struct {
		in        Rate
		want      float64
		unlimited bool
	}{
		{Rate{50, time.Second}, 50, false},
		{Rate{600, time.Minute}, 10, false},
		{Rate{10, 100 * time.Millisecond}, 100, false},
		{Rate{}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in.String(), func(t *testing.T) {
			if got := tt.in.PerSecond(); got != tt.want {
				t.Fatalf("PerSecond() = %v, want %v", got, tt.want)
			}
			if got := tt.in.Unlimited(); got != tt.unlimited {
				t.Fatalf("Unlimited() = %v, want %v", got, tt.unlimited)
			}
		})
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"50/s", "600/m", "10/100ms", "0", "unlimited", "1/1m30s", "5/ms", "-1/s", "5/0s", "x/y", "1/9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRate) {
				t.Fatalf("ParseRate(%q) error %v does not wrap ErrInvalidRate", s, err)
			}
			return
		}
		if r.Count < 0 || r.Per < 0 || (r.Count == 0) != (r.Per == 0) {
			t.Fatalf("ParseRate(%q) = %+v, inconsistent", s, r)
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", s, r, r.String(), back, err)
		}
		if !r.Unlimited() && !(r.PerSecond() > 0) {
			t.Fatalf("ParseRate(%q).PerSecond() = %v, want > 0", s, r.PerSecond())
		}
	})
}
