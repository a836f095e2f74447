//go:build unix

package vaulttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	err := Poll(context.Background(), time.Minute, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls)
}

func TestPollReturnsTheLastErrorAfterTheTimeout(t *testing.T) {
	notYet := errors.New("not yet")
	err := Poll(context.Background(), 20*time.Millisecond, time.Millisecond, func() error { return notYet })
	require.ErrorIs(t, err, notYet)
	require.ErrorContains(t, err, "condition not met within 20ms")
}

func TestPollStopsWhenTheContextIsDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Poll(ctx, time.Minute, time.Millisecond, func() error { return errors.New("not yet") })
	require.ErrorIs(t, err, context.Canceled)
}
