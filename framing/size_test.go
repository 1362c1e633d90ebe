package framing

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckSize(t *testing.T) {
	const limit = 1 << 20
	tests := []struct {
		name string
		size int32
		want error
	}{
		{"negative", -1, ErrNegativeSize},
		{"min int32", -1 << 31, ErrNegativeSize},
		{"zero", 0, ErrFrameTooSmall},
		{"seven", 7, ErrFrameTooSmall},
		{"eight", 8, nil},
		{"at limit", limit, nil},
		{"over limit", limit + 1, ErrFrameTooLarge},
		{"max int32", 0x7fffffff, ErrFrameTooLarge},
		{"GET as size", 0x47455420, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSize(tt.size, limit)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("CheckSize(%d) = %v, want %v", tt.size, err, tt.want)
			}
			if errors.Is(err, ErrFrameTooLarge) && !strings.Contains(err.Error(), "1048576") {
				t.Errorf("error %q does not name the limit", err)
			}
		})
	}
}
