package usagestats

import (
	"fmt"
	"time"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// NumCodes is how many verify outcome codes there are.
const NumCodes = 9

// Counts holds one count per verify outcome code, indexed in verifyapi.Codes() order.
type Counts [NumCodes]uint64

// codeValid is the index of verifyapi.CodeValid in Counts.
const codeValid = NumCodes - 1

// CodeIndex returns the index of a verify code in Counts.
func CodeIndex(code string) (int, bool) {
	switch code {
	case verifyapi.CodeMalformed:
		return 0, true
	case verifyapi.CodeNotFound:
		return 1, true
	case verifyapi.CodeDisabled:
		return 2, true
	case verifyapi.CodeExpired:
		return 3, true
	case verifyapi.CodeForbiddenIP:
		return 4, true
	case verifyapi.CodeInsufficientScope:
		return 5, true
	case verifyapi.CodeRateLimited:
		return 6, true
	case verifyapi.CodeUsageExceeded:
		return 7, true
	case verifyapi.CodeValid:
		return codeValid, true
	}
	return 0, false
}

// Get returns the count of code (0 for an unknown code).
func (c Counts) Get(code string) uint64 {
	if i, ok := CodeIndex(code); ok {
		return c[i]
	}
	return 0
}

// Map returns the counts by code name, leaving out zeros.
func (c Counts) Map() map[string]uint64 {
	out := make(map[string]uint64)
	for i, code := range verifyapi.Codes() {
		if c[i] != 0 {
			out[code] = c[i]
		}
	}
	return out
}

// Total returns the number of verifications, whatever their outcome.
func (c Counts) Total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// Refusals returns the number of verifications with an outcome other than VALID.
func (c Counts) Refusals() uint64 { return c.Total() - c[codeValid] }

// IsZero reports whether every count is zero.
func (c Counts) IsZero() bool { return c == Counts{} }

// Add adds o to c.
func (c *Counts) Add(o *Counts) {
	for i := range c {
		c[i] += o[i]
	}
}

// sub subtracts o from c, never below zero.
func (c *Counts) sub(o *Counts) {
	for i := range c {
		c[i] -= min(c[i], o[i])
	}
}

// Granularity is the width of a time bucket.
type Granularity int

// Granularities.
const (
	Hour Granularity = iota + 1
	Day
)

// ParseGranularity reads "hour" or "day".
func ParseGranularity(s string) (Granularity, error) {
	switch s {
	case "hour":
		return Hour, nil
	case "day":
		return Day, nil
	}
	return 0, fmt.Errorf("granularity must be hour or day, not %.20q", s)
}

// String returns "hour" or "day".
func (g Granularity) String() string {
	switch g {
	case Hour:
		return "hour"
	case Day:
		return "day"
	}
	return fmt.Sprintf("Granularity(%d)", int(g))
}

// Seconds returns the bucket width in seconds.
func (g Granularity) Seconds() int64 {
	if g == Hour {
		return 3600
	}
	return 86400
}

// Start returns the start of the bucket holding t, in Unix seconds; buckets are aligned
// on UTC hours and days.
func (g Granularity) Start(t time.Time) int64 { return floor(t.Unix(), g.Seconds()) }

func floor(sec, width int64) int64 {
	r := sec % width
	if r < 0 {
		r += width
	}
	return sec - r
}

// Config bounds what is kept. Zero fields take the defaults.
type Config struct {
	// Hours is how many hourly buckets are kept, the current hour included (default 48).
	Hours int
	// Days is how many daily buckets are kept, today included (default 90); tags and
	// networks older than that are dropped too.
	Days int
	// MaxTagValues bounds the distinct tag name=value pairs counted per key (and per
	// role) per day (default 32); a pair beyond it counts as name=other.
	MaxTagValues int
	// MaxTagNames bounds the distinct tag names per key (and per role) per day
	// (default 8); a tag with a name beyond it counts as other=other.
	MaxTagNames int
	// MaxNetworks bounds the client networks kept per key (default 64); the least
	// recently seen is evicted.
	MaxNetworks int
}

// Defaults and limits of Config.
const (
	DefaultHours        = 48
	DefaultDays         = 90
	DefaultMaxTagValues = 32
	DefaultMaxTagNames  = 8
	DefaultMaxNetworks  = 64

	MaxHours        = 24 * 31
	MaxDays         = 3 * 366
	MaxMaxTagValues = 1024
	MaxMaxTagNames  = 64
	MaxMaxNetworks  = 1024
)

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Hours == 0 {
		c.Hours = DefaultHours
	}
	if c.Days == 0 {
		c.Days = DefaultDays
	}
	if c.MaxTagValues == 0 {
		c.MaxTagValues = DefaultMaxTagValues
	}
	if c.MaxTagNames == 0 {
		c.MaxTagNames = DefaultMaxTagNames
	}
	if c.MaxNetworks == 0 {
		c.MaxNetworks = DefaultMaxNetworks
	}
	return c
}

// Validate checks c after defaults, naming the field out of range.
func (c Config) Validate() error {
	c = c.WithDefaults()
	for _, f := range []struct {
		name     string
		v, limit int
	}{
		{"hours", c.Hours, MaxHours},
		{"days", c.Days, MaxDays},
		{"max_tag_values", c.MaxTagValues, MaxMaxTagValues},
		{"max_tag_names", c.MaxTagNames, MaxMaxTagNames},
		{"max_networks", c.MaxNetworks, MaxMaxNetworks},
	} {
		if f.v < 1 || f.v > f.limit {
			return fmt.Errorf("%s must be between 1 and %d, not %d", f.name, f.limit, f.v)
		}
	}
	return nil
}

// hourFloor and dayFloor are the oldest bucket starts kept at now.
func (c *Config) hourFloor(now int64) int64 { return floor(now, 3600) - int64(c.Hours-1)*3600 }
func (c *Config) dayFloor(now int64) int64  { return floor(now, 86400) - int64(c.Days-1)*86400 }
