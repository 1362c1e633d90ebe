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
	if _, err := loadConfig(path); err != nil {
		return err
	}
	fmt.Fprintln(stdout, path+": ok")
	return nil
}

func runProxy(path string) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	log, err := app.NewLogger(cfg.Log, os.Stderr)
	if err != nil {
		return err
	}
	a, err := app.Build(cfg, log)
	if err != nil {
		return err
	}
	return serveUntilSignal(a)
}

// serveUntilSignal starts a and stops it on SIGINT or SIGTERM.
func serveUntilSignal(a *app.App) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	log := a.Log()
	log.Info().Msg("signal received, draining")
	return a.Stop()
}
