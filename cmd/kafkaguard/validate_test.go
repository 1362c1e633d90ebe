package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A config file that cannot be read or parsed is one problem, reported once:
// validating the empty config left behind would only add noise. A value that
// does not decode is reported once too, by Load, not again by Validate.
func TestValidateBadFilesPrintEachProblemOnce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := "listeners:\n  - {address: 127.0.0.1:9092, upstream: 127.0.0.1:19092}\n"
	tests := []struct {
		name     string
		path     string
		problems int
		want     string // in the output
	}{
		{"yaml syntax error", write("syntax.yaml", "listeners:\n  - {address: 127.0.0.1:9092\n"), 1, "parse config"},
		{"directory", dir, 1, "is a directory"},
		{"missing file", filepath.Join(dir, "absent.yaml"), 1, "no such file"},
		{"bad CIDR", write("cidr.yaml", valid+"abuse: {allow: [10.0.0.0/33]}\n"), 1, "abuse.allow[0]"},
		{"bad CIDR and a bad value", write("two.yaml", valid+"abuse: {allow: [not-an-ip], ban_min: -1s}\n"), 2, "abuse.ban_min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run([]string{"validate", "--config", tt.path}, io.Discard, io.Discard)
			var ec *exitCode
			if !errors.As(err, &ec) || ec.code != 2 {
				t.Fatalf("validate = %v, want exit code 2", err)
			}
			if got := countProblems(err.Error()); got != tt.problems {
				t.Errorf("%d problems printed, want %d:\n%v", got, tt.problems, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("output does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

// countProblems counts the problems in validate's message: a one-line
// message is one problem; otherwise a heading is followed by one indented
// line per problem.
func countProblems(msg string) int {
	lines := strings.Split(strings.TrimRight(msg, "\n"), "\n")
	if len(lines) == 1 {
		return 1
	}
	return len(lines) - 1
}
