//go:build unix

package vaulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// CLIError is a failed `vault` CLI invocation.
type CLIError struct {
	Args     []string
	ExitCode int // -1 if it did not exit by itself (timeout)
	Stdout   string
	Stderr   string
}

func (e *CLIError) Error() string {
	return fmt.Sprintf("vault %s: exit %d\nstdout: %s\nstderr: %s",
		strings.Join(e.Args, " "), e.ExitCode, e.Stdout, e.Stderr)
}

// CLI runs the real `vault` CLI against this server with token ("" = none), for at most
// CLITimeout, and returns its stdout; a failure is a *CLIError carrying stderr.
func (s *Server) CLI(ctx context.Context, token string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.opts.VaultBin, args...)
	cmd.Env = s.Env(token)
	cmd.Dir = s.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			stderr.WriteString("\n(" + ctx.Err().Error() + " after at most " + s.opts.CLITimeout.String() + ")")
		}
		return stdout.String(), &CLIError{Args: args, ExitCode: code, Stdout: stdout.String(), Stderr: stderr.String()}
	}
	return stdout.String(), nil
}
