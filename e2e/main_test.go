package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// e2eEnv is the environment variable that enables the suite.
const e2eEnv = "KG_E2E"

var (
	// repoRoot is the module root, where deploy/testing/kafka-0.9.sh lives.
	repoRoot string
	// binPath is the kafkaguard binary TestMain built for this run.
	binPath string
)

// TestMain builds kafkaguard once (with -race, so the e2e traffic also hunts
// data races in the proxy) and stops the shared broker if a test started it.
func TestMain(m *testing.M) {
	if os.Getenv(e2eEnv) != "1" && os.Getenv(kafka4Env) != "1" {
		os.Exit(m.Run())
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "kafkaguard-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "kafkaguard")
	build := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/kafkaguard")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building kafkaguard:", err)
		return 1
	}
	defer stopSharedBroker()
	defer stopKafka4()
	return m.Run()
}

// requireE2E skips the test unless KG_E2E=1: the suite needs Java,
// kcat, python3-kafka and a few minutes, which plain `go test ./...` must not.
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv(e2eEnv) != "1" {
		t.Skipf("end-to-end test: set %s=1 (needs java, kcat, python3-kafka; see e2e/doc.go)", e2eEnv)
	}
}
