package anomaly

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// The defaults, and why.
const (
	// DefaultLearning is a full week: every hour of a weekday and of a weekend has been
	// seen at least once before the seasonal rate baseline is trusted, and a key's
	// networks include those it only uses on some days.
	DefaultLearning = 7 * 24 * time.Hour
	// DefaultDormancy is the CIS benchmarks' "credentials unused for 45 days": longer
	// than any monthly job's gap (28 to 31 days), so monthly keys never look dormant.
	DefaultDormancy = 45 * 24 * time.Hour
	// DefaultRateZ is measured on square roots of counts (see Config.RateZ): 6 robust
	// deviations is about 2.5 times the key's usual busiest 5 minutes for a key whose
	// level varies by ±20% from day to day (more for a key that varies more, and for a
	// quiet one, whose counting noise is larger); ordinary busy hours (×1.5 to ×2) stay
	// under it, runaway clients and scrapers (×5 and more) are well over it.
	DefaultRateZ = 6.0
	// DefaultRateFloor is 150 verifications in 5 minutes (one every 2 seconds): below
	// it a quiet key's developer running a script is not worth an alarm.
	DefaultRateFloor = 150
	// DefaultRefusalBurst is 20 refusals (or wrong secrets) in 5 minutes: a person
	// fixing a scope or a typo makes a handful; a probe or a guesser makes dozens.
	DefaultRefusalBurst = 20
	// DefaultNetworkFloor is 10 distinct networks in an hour: more than the offices and
	// homes of a typical team, fewer than any leak worth the name.
	DefaultNetworkFloor = 10
)

// Ranges Validate enforces.
const (
	minLearning     = time.Hour
	maxLearning     = 90 * 24 * time.Hour
	minDormancy     = 24 * time.Hour
	maxDormancy     = 3650 * 24 * time.Hour
	minRateZ        = 1.0
	maxRateZ        = 100.0
	maxCount        = 1_000_000
	minNetworkFloor = 2
	// maxNetworkFloor stays where the 128-bit distinct counter is still accurate.
	maxNetworkFloor = 200
)

// Defaults returns the default Config.
func Defaults() Config {
	return Config{
		Learning:     DefaultLearning,
		Dormancy:     DefaultDormancy,
		RateZ:        DefaultRateZ,
		RateFloor:    DefaultRateFloor,
		RefusalBurst: DefaultRefusalBurst,
		NetworkFloor: DefaultNetworkFloor,
	}
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	d := Defaults()
	if c.Learning == 0 {
		c.Learning = d.Learning
	}
	if c.Dormancy == 0 {
		c.Dormancy = d.Dormancy
	}
	if c.RateZ == 0 {
		c.RateZ = d.RateZ
	}
	if c.RateFloor == 0 {
		c.RateFloor = d.RateFloor
	}
	if c.RefusalBurst == 0 {
		c.RefusalBurst = d.RefusalBurst
	}
	if c.NetworkFloor == 0 {
		c.NetworkFloor = d.NetworkFloor
	}
	return c
}

// Validate checks c, naming the field that is out of range by the name the plugin gives
// it (anomaly_learning_period, anomaly_dormancy, anomaly_rate_z, anomaly_rate_floor,
// anomaly_refusal_burst, anomaly_network_floor, anomaly_off) at the start of the
// message. Zero fields are valid: they take the defaults.
func (c Config) Validate() error {
	switch {
	case c.Learning != 0 && (c.Learning < minLearning || c.Learning > maxLearning):
		return fmt.Errorf("anomaly_learning_period: must be between 1h and 90 days (%dh), got %s",
			int(maxLearning/time.Hour), c.Learning)
	case c.Dormancy != 0 && (c.Dormancy < minDormancy || c.Dormancy > maxDormancy):
		return fmt.Errorf("anomaly_dormancy: must be between 1 day (24h) and 3650 days (%dh), got %s",
			int(maxDormancy/time.Hour), c.Dormancy)
	case c.RateZ != 0 && (math.IsNaN(c.RateZ) || c.RateZ < minRateZ || c.RateZ > maxRateZ):
		return fmt.Errorf("anomaly_rate_z: must be between 1 and 100, got %v", c.RateZ)
	case c.RateFloor > maxCount:
		return fmt.Errorf("anomaly_rate_floor: must be between 1 and %d, got %d", maxCount, c.RateFloor)
	case c.RefusalBurst > maxCount:
		return fmt.Errorf("anomaly_refusal_burst: must be between 1 and %d, got %d", maxCount, c.RefusalBurst)
	case c.NetworkFloor != 0 && (c.NetworkFloor < minNetworkFloor || c.NetworkFloor > maxNetworkFloor):
		return fmt.Errorf("anomaly_network_floor: must be between %d and %d, got %d",
			minNetworkFloor, maxNetworkFloor, c.NetworkFloor)
	}
	for _, k := range c.Off {
		if _, err := ParseKind(string(k)); err != nil || string(k) != strings.ToLower(strings.TrimSpace(string(k))) {
			return fmt.Errorf("anomaly_off: unknown kind %q (one of %s)", k, kindList())
		}
	}
	return nil
}

// ParseKind returns the Kind named s (surrounding space and case ignored).
func ParseKind(s string) (Kind, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, k := range Kinds() {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown anomaly kind %q (one of %s)", s, kindList())
}

func kindList() string {
	names := make([]string, 0, numKinds)
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

const numKinds = 6

// kindIndex returns k's index in Kinds().
func kindIndex(k Kind) int {
	switch k {
	case NewNetwork:
		return 0
	case ManyNetworks:
		return 1
	case RateSpike:
		return 2
	case RefusalStorm:
		return 3
	case SecretGuessing:
		return 4
	case DormantWake:
		return 5
	}
	return -1
}

// offMask returns the bits (by kindIndex) of the kinds c turns off.
func (c *Config) offMask() uint8 {
	var m uint8
	for _, k := range c.Off {
		if i := kindIndex(k); i >= 0 {
			m |= 1 << i
		}
	}
	return m
}

var errCorrupt = errors.New("anomaly state is truncated or corrupt")
