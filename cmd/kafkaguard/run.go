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
	cfg, loadErr := config.Load(path, os.Environ())
	if loadErr != nil && errors.Is(loadErr, os.ErrNotExist) {
		return cfg, &exitCode{2, loadErr}
	}
	// Load returns what it could decode with its error, so Validate can
	// add the problems of the rest: every problem is listed at once.
	if err := errors.Join(loadErr, cfg.Validate()); err != nil {
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
