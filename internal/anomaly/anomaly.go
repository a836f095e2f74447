// Package anomaly learns each API key's normal use online, from its own verify outcomes,
// and reports what breaks it: a new client network, many networks at once, a rate spike
// above the key's seasonal baseline, a storm of refusals or of wrong secrets for one
// key_id, a dormant key waking up. Vault-free: the plugin calls Observe on verify's hot
// path (O(1) per call, no I/O), stores the anomalies it returns, and flushes the per-key
// state (Snapshot) with the usage counters so baselines survive restarts and failover.
package anomaly

import (
	"net/netip"
	"time"
)

// Kind names a signal.
type Kind string

// Kinds.
const (
	NewNetwork     Kind = "new_network"
	ManyNetworks   Kind = "many_networks"
	RateSpike      Kind = "rate_spike"
	RefusalStorm   Kind = "refusal_storm"
	SecretGuessing Kind = "secret_guessing"
	DormantWake    Kind = "dormant_wake"
)

// Kinds returns every kind, in a fixed order.
func Kinds() []Kind {
	return []Kind{NewNetwork, ManyNetworks, RateSpike, RefusalStorm, SecretGuessing, DormantWake}
}

// Config is a role's detection settings; zero fields take the defaults (Defaults).
type Config struct {
	// Learning is how long a key is observed before it alarms on new networks, network
	// counts and rates.
	Learning time.Duration
	// Dormancy is the silence after which a use is a dormant key waking up.
	Dormancy time.Duration
	// RateZ is how many robust deviations above its seasonal baseline a key's
	// verifications in a window must be to be a spike; RateFloor is the least count in a
	// window that can be one (quiet keys do not alarm on small absolute counts).
	RateZ     float64
	RateFloor uint32
	// RefusalBurst is how many refusals (INSUFFICIENT_SCOPE, FORBIDDEN_IP, RATE_LIMITED)
	// or wrong secrets (NOT_FOUND for the key's id) in a window make a storm.
	RefusalBurst uint32
	// NetworkFloor is the least number of distinct networks in an hour that can be
	// "many networks at once", whatever the baseline.
	NetworkFloor uint32
	// Off turns kinds off for the role.
	Off []Kind
}

// Event is one verify outcome of a key that exists (its key_id was found).
type Event struct {
	Key    string
	Role   string
	Code   string // verify code (verifyapi); NOT_FOUND means a wrong secret for Key
	Client netip.Addr
	Time   time.Time
}

// Anomaly is one signal that fired.
type Anomaly struct {
	Key  string
	Role string
	Kind Kind
	At   time.Time
	// Detail says what was seen and the baseline it broke, for people (never the key).
	Detail string
	// Observed and Baseline are the numbers compared (for example verifications in the
	// window and what the baseline allowed); Network is the client network, when one is
	// involved.
	Observed float64
	Baseline float64
	Network  string
}
