// Package anomaly learns each API key's normal use online, from its own verify outcomes,
// and reports what breaks it: a new client network, many networks at once, a rate spike
// above the key's seasonal baseline, a storm of refusals or of wrong secrets for one
// key_id, a dormant key waking up. Vault-free: the plugin calls Observe on verify's hot
// path (O(1) per call, no I/O), stores the anomalies it returns, and flushes the per-key
// state (Snapshot) with the usage counters so baselines survive restarts and failover.
//
// # What counts for what
//
// Every code but NOT_FOUND proves the caller has the secret: it updates the key's
// networks and its last use (dormancy). The rate counts VALID, RATE_LIMITED and
// USAGE_EXCEEDED (demand on the key); the refusal storm counts INSUFFICIENT_SCOPE,
// FORBIDDEN_IP and RATE_LIMITED, each against its own baseline; secret guessing counts
// NOT_FOUND. DISABLED and EXPIRED only count as uses (a disabled key used from a new
// network is still a new network); MALFORMED and unknown codes are ignored.
//
// # Signals
//
// Windows: the last 5 minutes (five 1-minute buckets) for rates, refusals and wrong
// secrets; the last hour (six 10-minute bitmaps) for distinct networks. Baselines are
// learned per hour from the hour's busiest 5 minutes, so that a window is compared with
// what the key's windows usually reach, and an alarm comes as soon as a window crosses
// its limit (within 5 minutes of the first anomalous event in the benchmark).
//
//   - rate_spike: per slot (24 UTC hours × weekday or weekend) an EWMA of √(the hour's
//     busiest 5 minutes), and the key's pooled relative deviation from it (an EWMA of
//     |residual| / baseline, the robust part: hours far above the baseline are clipped
//     before they are learned). The limit is RateZ deviations above the largest
//     baseline of the hour and its two neighbours, on the √ scale (where counting noise
//     is about 0.5 whatever the count), and at least RateFloor.
//   - refusal_storm: per code, a decayed peak of the busiest 5 minutes per hour (half-life
//     about six days). A storm is at least RefusalBurst, more than twice the peak plus
//     five, and more than three times the key's usual share of refusals in its current
//     traffic plus five (a spike of ordinary calls brings its share of refusals). A
//     RATE_LIMITED storm also needs RateFloor of them (the limiter at work on a client
//     that calls too fast is not a probe).
//   - secret_guessing: NOT_FOUND for the key's id in 5 minutes, at least RefusalBurst and
//     twice its peak plus five; from the key's own networks only above its rate limit
//     too, since a client left with a rotated secret sends wrong secrets at its usual
//     rate.
//   - dormant_wake: a use after a silence of at least Dormancy and at least twice the
//     longest silence the key had before (a quarterly job is not dormant after its first
//     quarter).
//   - new_network: after learning (and 12 hours of use; one per 14 hours of a shorter
//     learning period), a network the key does not know is pending until the evidence
//     is in. Theft: the key's usual networks (those used
//     in the week before, weighed by their hours of use and halved every 6 hours since
//     their last use) are used again, at least 80% of their weight and every one that
//     was in use when the new one came, within 5 minutes of a use of the new one: it
//     fires and the network is known (as a suspect: not usual, evicted first). A move:
//     a network that was in use when the new one came stops (unused for 8 of its recent
//     gaps, at least 2 hours) while the new one is used, or only the new one is used for
//     3 hours: the new one is adopted, the old one demoted; so are, after a day, networks
//     used in 3 hours without theft evidence. Within a day of a network alarm, new
//     networks are suspects, never moves. A key that used 8 or more /24s (at least two
//     per wider network) while learning is roaming (mobile clients): it is judged by its
//     wider networks (/16, /32), learns them until half a learning period passes without
//     a new one (at most a second learning period), and any of them used at the same
//     time as a new one is evidence.
//   - many_networks: distinct networks (wider ones for a roaming key) in the sliding
//     hour, counted in 128-bit linear-counting bitmaps; it fires when the count crosses
//     the larger of NetworkFloor and twice the key's decayed hourly peak plus two (an
//     hour that fired is not learned; a lasting rise is learned at most ×1.25 an hour).
//
// Each kind fires at most once per Cooldown for a key.
//
// # Bounds and cost
//
// A key's state is fixed-size arrays (about 1.8 KB; 24 networks, 16 wider networks,
// least recently used evicted with an hour of credit per hour of use, up to a week);
// it encodes to a few hundred bytes for a quiet key, about 1.1 KB for a busy one, and
// never more than about 2.3 KB (TestStateBounded feeds one key a million networks).
// Observe takes the detector's lock only to find the key, then the key's own lock; it
// does not allocate unless it returns an anomaly (BenchmarkObserve).
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
	// counts, rates and refusal storms (wrong secrets and dormancy need no learning).
	Learning time.Duration
	// Dormancy is the silence after which a use is a dormant key waking up.
	Dormancy time.Duration
	// RateZ is how many robust deviations above its seasonal baseline a key's
	// verifications in a window must be to be a spike (deviations of square roots of
	// counts; the window is 5 minutes); RateFloor is the least count in a window that
	// can be one (quiet keys do not alarm on small absolute counts).
	RateZ     float64
	RateFloor uint32
	// RefusalBurst is how many refusals (INSUFFICIENT_SCOPE, FORBIDDEN_IP, RATE_LIMITED)
	// or wrong secrets (NOT_FOUND for the key's id) in a window (5 minutes) make a storm
	// at least.
	RefusalBurst uint32
	// NetworkFloor is the least number of distinct networks in an hour that can be
	// "many networks at once", whatever the baseline.
	NetworkFloor uint32
	// Off turns kinds off for the role.
	Off []Kind
}

// Event is one verify outcome of a key that exists (its key_id was found), or Count of
// them alike (answers a caller served itself and reported in one batch).
type Event struct {
	Key    string
	Role   string
	Code   string // verify code (verifyapi); NOT_FOUND means a wrong secret for Key
	Client netip.Addr
	Time   time.Time
	// Count is how many outcomes the event stands for: 0 and 1 mean one; at most
	// MaxCount count (a batch beyond it is more than any limit needs to see). They
	// weigh on the rate and refusal windows; a use's other effects (its network, the
	// end of a dormancy) happen once.
	Count uint64
}

// MaxCount bounds Event.Count.
const MaxCount = maxCount

func (ev *Event) weight() uint32 {
	return uint32(max(1, min(ev.Count, MaxCount)))
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
	//
	// Per kind: rate_spike, refusal_storm and secret_guessing give the count in the
	// 5-minute window and the limit it reached; many_networks the distinct networks in
	// the hour and the limit; new_network how many of the key's usual networks kept
	// being used and how many it had; dormant_wake the days of silence and the dormancy
	// in days.
	Observed float64
	Baseline float64
	Network  string
}
