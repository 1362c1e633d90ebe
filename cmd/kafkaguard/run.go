package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kafkaguard/kafkaguard/cmd/internal/app"
	"github.com/kafkaguard/kafkaguard/config"
)

func loadConfig(path string) (config.Config, error) {
	// Every problem is listed at once, each once; a file that cannot be read
	// or parsed is the one problem.
	cfg, err := config.LoadValid(path, os.Environ())
	if errors.Is(err, config.ErrFile) {
		return cfg, &exitCode{2, err}
	}
	if err != nil {
		return cfg, &exitCode{2, fmt.Errorf("invalid config %s:\n%s", path, indent(err))}
	}
	return cfg, nil
}

func indent(err error) string {
	return "  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")
}

func validate(path string, stdout io.Writer) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	// Warnings (a certificate about to expire) do not fail validation.
	for _, w := range cfg.Warnings(time.Now()) {
		fmt.Fprintln(stdout, path+": warning: "+w.Error())
	}
	fmt.Fprintln(stdout, path+": ok")
	return nil
}

func runProxy(path string) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	log, level, err := app.NewLevelLogger(cfg.Log, os.Stderr)
	if err != nil {
		return err
	}
	a, err := app.Build(cfg, log)
	if err != nil {
		return err
	}
	a.SetLogLevel(level)
	a.SetConfigFile(path, os.Environ(), 0)
	return serveUntilSignal(a, cfg.Timeouts.Shutdown)
}

// exitGrace is how long past timeouts.shutdown the process waits for the
// drain to finish before it exits anyway.
const exitGrace = 500 * time.Millisecond

// serveUntilSignal starts a and stops it on SIGINT or SIGTERM; SIGHUP
// reloads the config file (the App logs and counts the result). A second
// signal during the drain exits at once (status 128+signal, as a shell
// reports a killed process), and the drain is never waited for longer than
// shutdown plus exitGrace: an operator's or Kubernetes' stop always ends the
// process, whatever the brokers and clients do.
func serveUntilSignal(a *app.App, shutdown time.Duration) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	if err := a.Start(); err != nil {
		return err
	}
	var sig os.Signal
	for sig == nil {
		select {
		case sig = <-sigs:
		case <-hups:
			a.Reload("SIGHUP") // logged and counted by the App; a failure keeps the running config
		}
	}
	// The drain is bounded by the shutdown timeout in force, which a reload may have changed.
	shutdown = a.ShutdownTimeout()
	log := a.Log()
	log.Info().Str("signal", sig.String()).Dur("timeout_ms", shutdown).
		Msg("signal received, draining; send it again to exit at once")
	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop() }()
	timer := time.NewTimer(shutdown + exitGrace)
	defer timer.Stop()
	select {
	case err := <-stopped:
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("drain cut short after timeouts.shutdown (%v): the connections left were closed", shutdown)
		}
		return err
	case sig := <-sigs:
		log.Warn().Str("signal", sig.String()).Msg("second signal: exiting without waiting for the drain")
		return &exitCode{128 + signalNumber(sig), fmt.Errorf("second %v during the drain", sig)}
	case <-timer.C:
		log.Error().Dur("timeout_ms", shutdown).Msg("drain did not end within timeouts.shutdown; exiting")
		return &exitCode{1, fmt.Errorf("drain still running %v after timeouts.shutdown (%v)", exitGrace, shutdown)}
	}
}

func signalNumber(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return 1
}
