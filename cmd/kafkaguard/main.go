// Command kafkaguard is a TCP reverse proxy that guards Apache Kafka brokers
// from oversized, malformed and abusive requests.
//
//	kafkaguard run --config FILE       serve until SIGINT/SIGTERM, then drain; SIGHUP reloads
//	kafkaguard validate --config FILE  print every problem in FILE (exit 2 if any)
//	kafkaguard demo                    an in-process 3-broker cluster behind kafkaguard
//	kafkaguard bans list|add|lift      the admin API's bans, for people at a shell
//	kafkaguard version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/kafkaguard/kafkaguard/cmd/internal/app"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func init() { app.Version = version }

// exitCode lets a subcommand choose the exit status with its error.
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string { return e.err.Error() }
func (e *exitCode) Unwrap() error { return e.err }

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	code := 1
	var ec *exitCode
	if errors.As(err, &ec) {
		code = ec.code
	}
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "kafkaguard:", err)
	}
	os.Exit(code)
}

const usage = `usage:
  kafkaguard run --config FILE       run the proxy (SIGINT/SIGTERM drain and stop; SIGHUP reloads FILE)
  kafkaguard validate --config FILE  check a config file; prints every problem, exit 2 if any
  kafkaguard demo                    3 in-process brokers behind kafkaguard on 127.0.0.1:9092-9094
  kafkaguard bans list|add|lift      list, add or lift bans through the admin API (bans -h for flags)
  kafkaguard version                 print the version
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitCode{2, errors.New("no command given")}
	}
	switch args[0] {
	case "run":
		path, err := configFlag("run", args[1:], stderr)
		if err != nil {
			return err
		}
		return runProxy(path)
	case "validate":
		path, err := configFlag("validate", args[1:], stderr)
		if err != nil {
			return err
		}
		return validate(path, stdout)
	case "demo":
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err := fs.Parse(args[1:]); err != nil {
			return &exitCode{2, err}
		}
		return runDemo(stdout)
	case "bans":
		return bansCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "kafkaguard", versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return &exitCode{2, fmt.Errorf("unknown command %q", args[0])}
	}
}

func configFlag(cmd string, args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path to the YAML config file")
	if err := fs.Parse(args); err != nil {
		return "", &exitCode{2, err}
	}
	if *path == "" {
		return "", &exitCode{2, errors.New(cmd + ": --config FILE is required")}
	}
	if fs.NArg() > 0 {
		return "", &exitCode{2, fmt.Errorf("%s: unexpected arguments %q", cmd, fs.Args())}
	}
	return *path, nil
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}
