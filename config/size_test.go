package config

import (
	"errors"
	"math"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"1024", 1024},
		{"512B", 512},
		{"512b", 512},
		{"64KiB", 64 * KiB},
		{"64kib", 64 * KiB},
		{"64Ki", 64 * KiB},
		{"1MiB", MiB},
		{"2GiB", 2 * GiB},
		{"1TiB", TiB},
		{"1KB", 1000},
		{"1MB", 1000 * 1000},
		{"1GB", 1000 * 1000 * 1000},
		{"1TB", 1e12},
		{" 64 KiB ", 64 * KiB},
		{"0010", 10},
		{"9223372036854775807", math.MaxInt64},
		{"8388607TiB", 8388607 * TiB},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil {
				t.Fatalf("ParseSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSizeErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "whole number"},
		{"12XB", `unknown unit "XB"`},
		{"-1", "negative"},
		{"-1KiB", "negative"},
		{"+1", "whole number"},
		{"1.5MiB", "fractions"},
		{"KiB", "whole number"},
		{"1 2", "unknown unit"},
		{"9223372036854775808", "too large"},
		{"8388608TiB", "too large"},
		{"99999999999999999999KiB", "too large"},
		{"1k", "unknown unit"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseSize(tt.in)
			if !errors.Is(err, ErrInvalidSize) {
				t.Fatalf("ParseSize(%q) error = %v, want ErrInvalidSize", tt.in, err)
			}
			if !contains(err.Error(), tt.want) {
				t.Fatalf("ParseSize(%q) error = %q, want it to mention %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{512, "512B"},
		{1000, "1000B"},
		{KiB, "1KiB"},
		{1536, "1536B"},
		{1536 * KiB, "1536KiB"},
		{MiB, "1MiB"},
		{64 * MiB, "64MiB"},
		{GiB, "1GiB"},
		{3 * TiB, "3TiB"},
		{-5, "-5B"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
			}
		})
	}
}

func TestSizeText(t *testing.T) {
	var s Size
	if err := s.UnmarshalText([]byte("2MiB")); err != nil || s != 2*MiB {
		t.Fatalf("UnmarshalText(2MiB) = %v, %v", s, err)
	}
	if err := s.UnmarshalText([]byte("2XB")); err == nil {
		t.Fatal("UnmarshalText(2XB) succeeded")
	}
	b, err := (64 * KiB).MarshalText()
	if err != nil || string(b) != "64KiB" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1024", "64KiB", "1MiB", "2GiB", "1KB", "12XB", "-1", "1.5MiB", " 7 tib", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSize) {
				t.Fatalf("ParseSize(%q) error %v does not wrap ErrInvalidSize", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		back, err := ParseSize(n.String())
		if err != nil || back != n {
			t.Fatalf("round trip %q -> %d -> %q -> %d, %v", s, n, n.String(), back, err)
		}
	})
}
