//go:build !testclock

package apikey

import (
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// clock is the engine's time source for verify and usage counting: the wall clock.
// Builds with the testclock tag (integration tests only; never released, see
// testclock_on.go) replace it with one a test can move, to script a day of traffic.
type clock struct{}

func (clock) now() time.Time { return time.Now() }

func (clock) paths(*backend) []*framework.Path { return nil }
