package config

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// maxTokenBytes bounds the token file read: a token is a few dozen bytes, and a path pointing at a large
// file by mistake must not be read whole.
const maxTokenBytes = 4096

// ReadToken reads the admin API's bearer token from path (admin.token_file): the file's content with
// one trailing newline ("\n" or "\r\n") trimmed, as `echo token > file` and Kubernetes Secrets written
// from a shell leave it. An empty token, a token with whitespace inside or around it, and a file over 4 KiB
// are errors: each is a mistake that would otherwise make the API open or unusable.
func ReadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	n := len(buf)
	if err != nil {
		return "", fmt.Errorf("read token %s: %w", path, err)
	}
	if n > maxTokenBytes {
		return "", invalidf(fmt.Sprintf("token file %s is over %d bytes; it should hold the token alone", path, maxTokenBytes))
	}
	tok := strings.TrimSuffix(strings.TrimSuffix(string(buf[:n]), "\n"), "\r")
	if tok == "" {
		return "", invalidf(fmt.Sprintf("token file %s is empty", path))
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", invalidf(fmt.Sprintf("token in %s contains whitespace (only one trailing newline is trimmed)", path))
	}
	return tok, nil
}
