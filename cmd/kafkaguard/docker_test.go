package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The image is built from a context that .dockerignore cuts down to an
// allow list. No Docker daemon runs here or in CI, so this test does what
// the Dockerfile's build stage does, from exactly the files that context
// would hold: its `go build` line, run in a directory of only those files.
// A package the allow list forgets (or a build line that no longer builds)
// fails here, not in someone's image build. The binary it makes must carry
// the version the build line stamps, and the image's default command
// without a mounted config must exit 2 naming the missing file, as the
// Dockerfile says.
//
// It runs with KG_DOCKER_CONTEXT=1 (CI's step of its own): on a cold cache
// its static, trimmed build compiles the standard library and every
// dependency again, which has no place among the unit tests' timeouts.
func TestDockerBuildContext(t *testing.T) {
	if os.Getenv("KG_DOCKER_CONTEXT") != "1" {
		t.Skip("set KG_DOCKER_CONTEXT=1 to build kafkaguard as the Dockerfile does (CI does)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile(t, filepath.Join(root, "Dockerfile"))
	checkGoImage(t, df.from, filepath.Join(root, "go.mod"))

	ctxDir := t.TempDir()
	n := copyContext(t, root, ctxDir, dockerignore(t, filepath.Join(root, ".dockerignore")))
	if n == 0 {
		t.Fatal("the build context is empty")
	}
	out := filepath.Join(t.TempDir(), "out")
	build := strings.ReplaceAll(df.build, "${VERSION}", "docker-test")
	build = strings.ReplaceAll(build, "/out/", out+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", build)
	cmd.Dir = ctxDir
	// No .git in the context, as in an image build: nothing to stamp.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly -buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build, in a context of the %d files .dockerignore lets in:\n%s\n%s: %v", n, build, b, err)
	}
	bin := filepath.Join(out, "kafkaguard")
	if b, err := exec.CommandContext(ctx, bin, "version").Output(); err != nil || !strings.HasPrefix(string(b), "kafkaguard docker-test") {
		t.Errorf("%s version: %q, %v; want the version the build line stamps", bin, b, err)
	}

	// The image's default command, with no config mounted.
	if len(df.cmd) < 3 || df.cmd[0] != "run" || df.cmd[1] != "--config" {
		t.Fatalf("CMD %q: want run --config <file>", df.cmd)
	}
	if _, err := os.Stat(df.cmd[2]); !errors.Is(err, fs.ErrNotExist) {
		t.Logf("%s exists on this machine: the image's command without a config is not run", df.cmd[2])
		return
	}
	c := exec.CommandContext(ctx, bin, df.cmd...)
	var stderr strings.Builder
	c.Stderr = &stderr
	err = c.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "read config: open "+df.cmd[2]) {
		t.Errorf("the image's CMD without a config: %v, stderr %q; want exit 2 naming %s", err, stderr.String(), df.cmd[2])
	}
}

// dockerfileFacts are the lines of the Dockerfile this test acts on.
type dockerfileFacts struct {
	from  string   // the build stage's image, e.g. golang:1.26
	build string   // the RUN line's command that runs go build
	cmd   []string // CMD, exec form
}

func dockerfile(t *testing.T, path string) dockerfileFacts {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfileFacts
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "FROM golang:"):
			df.from = strings.Fields(line)[1]
		case strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build"):
			df.build = strings.TrimPrefix(line, "RUN ")
		case strings.HasPrefix(line, "CMD "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "CMD ")), &df.cmd); err != nil {
				t.Fatalf("CMD is not in exec form: %q: %v", line, err)
			}
		}
	}
	if df.from == "" || df.build == "" || df.cmd == nil {
		t.Fatalf("%s: no FROM golang:, RUN ... go build or CMD line (got %+v)", path, df)
	}
	return df
}

// checkGoImage fails when the build stage's Go image is older than the go
// line of go.mod: golang:1.26 builds a module that says go 1.26.8 (the
// tag is the newest 1.26 release), golang:1.25 would refuse it.
func checkGoImage(t *testing.T, image, gomod string) {
	t.Helper()
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no go line", gomod)
	}
	tag := strings.TrimPrefix(image, "golang:")
	if tag != string(m[1]) && !strings.HasPrefix(tag, string(m[1])+".") {
		t.Errorf("the build stage uses %s, go.mod says go %s", image, m[1])
	}
}

// ignoreRule is one line of .dockerignore.
type ignoreRule struct {
	include bool   // a "!" line
	pattern string // without "!" and a trailing "/"
}

// dockerignore reads the file's rules, refusing any form ignored below
// does not implement (so a new kind of line fails loudly instead of being
// misread).
func dockerignore(t *testing.T, path string) []ignoreRule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules []ignoreRule
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{include: strings.HasPrefix(line, "!")}
		r.pattern = strings.TrimSuffix(strings.TrimPrefix(line, "!"), "/")
		switch glob := strings.TrimPrefix(r.pattern, "**/"); {
		case r.pattern == "*":
		case glob != r.pattern && !strings.Contains(glob, "/") && !strings.Contains(glob, "**"):
		case !strings.ContainsAny(r.pattern, "*?["):
		default:
			t.Fatalf("%s: the test does not understand %q (it knows *, plain paths, and **/<name glob>)", path, line)
		}
		rules = append(rules, r)
	}
	return rules
}

// ignored applies rules to rel, a slash-separated path in the context:
// the last rule that matches decides, as Docker's does.
func ignored(rules []ignoreRule, rel string) bool {
	out := false
	for _, r := range rules {
		if matchRule(r.pattern, rel) {
			out = !r.include
		}
	}
	return out
}

func matchRule(pattern, rel string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "**/"):
		glob := strings.TrimPrefix(pattern, "**/")
		for _, part := range strings.Split(rel, "/") {
			if ok, _ := filepath.Match(glob, part); ok {
				return true
			}
		}
		return false
	default:
		return rel == pattern || strings.HasPrefix(rel, pattern+"/")
	}
}

// reincluded reports whether a "!" rule names a path under dir, so an
// ignored dir must still be walked.
func reincluded(rules []ignoreRule, dir string) bool {
	for _, r := range rules {
		if r.include && strings.HasPrefix(r.pattern, dir+"/") {
			return true
		}
	}
	return false
}

// copyContext copies the files under root that rules let in to dst and
// returns how many.
func copyContext(t *testing.T, root, dst string, rules []ignoreRule) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && ignored(rules, rel) && !reincluded(rules, rel) {
				return filepath.SkipDir // .git, node_modules: nothing in them is let in
			}
			return nil
		}
		if rel == "." || ignored(rules, rel) || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		n++
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
