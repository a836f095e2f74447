package anomaly

// STUB: the API the plugin codes against; the implementation replaces every body.

// Detector holds the learned state of at most maxKeys keys (least recently used
// evicted; an evicted key's state is reloaded through Observe's load). Safe for
// concurrent use.
type Detector struct{}

// NewDetector returns a detector that holds at most maxKeys keys in memory.
func NewDetector(maxKeys int) *Detector { return &Detector{} }

// Defaults returns the default Config.
func Defaults() Config { return Config{} }

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config { return c }

// Validate checks c, naming the field that is out of range.
func (c Config) Validate() error { return nil }

// Observe learns from one event and returns the anomalies it fires (usually none). load
// returns the key's state as Snapshot last encoded it (nil when there is none) and is
// called only when the detector holds no state for the key. O(1) per call, no I/O but
// load's.
func (d *Detector) Observe(ev Event, cfg Config, load func() []byte) []Anomaly { return nil }

// Dirty returns the keys whose state changed since their last Snapshot.
func (d *Detector) Dirty() []string { return nil }

// Snapshot encodes key's state for storage and marks it clean; false when it is not held.
func (d *Detector) Snapshot(key string) ([]byte, bool) { return nil, false }

// Forget drops key's state (the key is gone).
func (d *Detector) Forget(key string) {}
