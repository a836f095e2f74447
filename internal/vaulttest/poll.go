//go:build unix

package vaulttest

import (
	"context"
	"fmt"
	"time"
)

// pollInterval is how often Poll and the readiness checks try again: short against the
// start-up times (hundreds of ms), long enough not to load a 2-core machine.
const pollInterval = 100 * time.Millisecond

// Poll calls f every interval until it returns nil, and returns f's last error once
// timeout has passed or ctx is done.
func Poll(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}
