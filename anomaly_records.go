package apikey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
)

// Storage of anomaly detection (LocalStorage, like keys/ and usage/: each cluster
// watches the verifications it answers):
//
//	anomalies/<id>              one record per anomaly raised
//	usage/anomaly/<key_id>      a key's learned baseline (anomaly.Detector.Snapshot)
const (
	anomalyPrefix      = "anomalies/"
	anomalyStatePrefix = usagePrefix + "anomaly/"
)

// maxDetectorKeys bounds the keys whose baselines are held in memory (about 1.8 KB
// each, so about 90 MB at most); a key past it is reloaded from storage on its next
// verify, one read.
const maxDetectorKeys = 50_000

// What happened to a key when its anomaly was raised.
const (
	anomalyLogged        = "logged"
	anomalyDisabled      = "disabled"
	anomalyDisableFailed = "disable_failed"
)

// anomalyRecord is a stored anomaly: what was seen, the baseline it broke, and what was
// done. It never holds key material.
type anomalyRecord struct {
	ID       string    `json:"id"`
	KeyID    string    `json:"key_id"`
	Role     string    `json:"role"`
	Kind     string    `json:"kind"`
	At       time.Time `json:"at"`
	Detail   string    `json:"detail"`
	Observed float64   `json:"observed"`
	Baseline float64   `json:"baseline"`
	Network  string    `json:"network,omitempty"`
	Action   string    `json:"action"`
	// Acknowledged marks an anomaly a person has looked at.
	Acknowledged   bool      `json:"acknowledged,omitempty"`
	AcknowledgedAt time.Time `json:"acknowledged_at,omitempty"`
	AcknowledgedBy string    `json:"acknowledged_by,omitempty"`
	Note           string    `json:"note,omitempty"`
}

// anomalyIDTime is the time part of an anomaly id: ids sort by when the anomaly was
// raised, so a listing is in time order and since/until need no record reads.
const anomalyIDTime = "20060102T150405.000Z"

var anomalyIDPattern = regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}$`)

func newAnomalyID(at time.Time) (string, error) {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", err
	}
	return at.UTC().Format(anomalyIDTime) + "-" + hex.EncodeToString(suffix[:]), nil
}

func (r *anomalyRecord) responseData() map[string]interface{} {
	data := map[string]interface{}{
		"id":              r.ID,
		"key_id":          r.KeyID,
		"role":            r.Role,
		"kind":            r.Kind,
		"at":              r.At.UTC().Format(time.RFC3339),
		"detail":          r.Detail,
		"observed":        r.Observed,
		"baseline":        r.Baseline,
		"network":         r.Network,
		"action":          r.Action,
		"acknowledged":    r.Acknowledged,
		"acknowledged_at": "",
		"acknowledged_by": r.AcknowledgedBy,
		"note":            r.Note,
	}
	if !r.AcknowledgedAt.IsZero() {
		data["acknowledged_at"] = r.AcknowledgedAt.UTC().Format(time.RFC3339)
	}
	return data
}

func (b *backend) anomalyRecord(ctx context.Context, s logical.Storage, id string) (*anomalyRecord, error) {
	entry, err := s.Get(ctx, anomalyPrefix+id)
	if err != nil {
		return nil, fmt.Errorf("reading anomaly: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	var r anomalyRecord
	if err := entry.DecodeJSON(&r); err != nil {
		return nil, fmt.Errorf("decoding anomaly: %w", err)
	}
	return &r, nil
}

func putAnomalyRecord(ctx context.Context, s logical.Storage, r *anomalyRecord) error {
	entry, err := logical.StorageEntryJSON(anomalyPrefix+r.ID, r)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing anomaly: %w", err)
	}
	return nil
}

// detect feeds one verify outcome of an existing key (code NOT_FOUND: a wrong secret for
// its id) to the detector. The detector's work is O(1) and in memory; only an anomaly,
// which fires at most once per key and kind per cooldown, costs storage writes here, so
// that a disable takes effect for the very next verify. Failures are logged: the verify
// has its answer already.
func (b *backend) detect(ctx context.Context, s logical.Storage, k *keyEntry, code string, client netip.Addr, now time.Time) {
	b.detectN(ctx, s, k, code, client, now, 1)
}

// detectN is detect for count outcomes alike (reported by a caller that served them
// itself, path_usage_report.go); the detector bounds the count.
func (b *backend) detectN(ctx context.Context, s logical.Storage, k *keyEntry, code string, client netip.Addr, now time.Time, count uint64) {
	if b.countingOff.Load() {
		return
	}
	var settings roleAnomaly
	r, err := b.getRole(ctx, s, k.Role)
	if err != nil {
		b.Logger().Warn("anomaly detection: reading the role failed; using the defaults", "role", k.Role, "error", err)
	} else if r != nil {
		settings = r.Anomaly
	}
	load := func() []byte {
		entry, err := s.Get(ctx, anomalyStatePrefix+k.KeyID)
		if err != nil {
			b.Logger().Warn("anomaly detection: reading a key's baseline failed; it starts afresh", "key_id", k.KeyID, "error", err)
			return nil
		}
		if entry == nil {
			return nil
		}
		return entry.Value
	}
	ev := anomaly.Event{Key: k.KeyID, Role: k.Role, Code: code, Client: client, Time: now, Count: count}
	for _, a := range b.detector.Observe(ev, settings.config(), load) {
		b.raiseAnomaly(ctx, s, a, settings.action())
	}
}

// raiseAnomaly records a, logs it, counts it, and disables its key when the role says so.
func (b *backend) raiseAnomaly(ctx context.Context, s logical.Storage, a anomaly.Anomaly, action string) {
	id, err := newAnomalyID(a.At)
	if err != nil {
		b.Logger().Error("anomaly not recorded: no random id", "key_id", a.Key, "kind", a.Kind, "error", err)
		return
	}
	rec := &anomalyRecord{
		ID: id, KeyID: a.Key, Role: a.Role, Kind: string(a.Kind), At: a.At.UTC(),
		Detail: a.Detail, Observed: a.Observed, Baseline: a.Baseline, Network: a.Network,
		Action: anomalyLogged,
	}
	if action == anomalyActionDisable {
		rec.Action = anomalyDisabled
		if err := b.disableKey(ctx, s, a.Key); err != nil {
			rec.Action = anomalyDisableFailed
			b.Logger().Error("anomaly: disabling the key failed", "key_id", a.Key, "anomaly_id", id, "error", err)
		}
	}
	b.counters.anomaly(a.Role, string(a.Kind))
	b.Logger().Warn("api key anomaly", "anomaly_id", id, "key_id", a.Key, "role", a.Role, "kind", string(a.Kind), "detail", a.Detail, "action", rec.Action)
	if err := putAnomalyRecord(ctx, s, rec); err != nil {
		b.Logger().Error("anomaly not recorded", "anomaly_id", id, "key_id", a.Key, "error", err)
	}
}

// disableKey disables a key as keys/<key_id> does (the caches drop the old record).
func (b *backend) disableKey(ctx context.Context, s logical.Storage, keyID string) error {
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()
	k, err := b.storageKeyEntry(ctx, s, keyID)
	if err != nil || k == nil || k.Disabled {
		return err
	}
	next := *k
	next.Disabled = true
	return b.putKeyEntry(ctx, s, &next)
}

// flushAnomalyStates writes the baselines that changed since the last flush.
func (b *backend) flushAnomalyStates(ctx context.Context, s logical.Storage) error {
	var errs []error
	for _, key := range b.detector.Dirty() {
		state, ok := b.detector.Snapshot(key)
		if !ok {
			continue
		}
		if err := s.Put(ctx, &logical.StorageEntry{Key: anomalyStatePrefix + key, Value: state}); err != nil {
			errs = append(errs, fmt.Errorf("storing a key's baseline: %w", err))
		}
	}
	return errors.Join(errs...)
}

// tidyAnomalies deletes anomaly records older than the usage retention and the
// baselines of keys that are gone.
func (b *backend) tidyAnomalies(ctx context.Context, s logical.Storage, retention time.Duration, now time.Time) (deleted int, err error) {
	ids, err := s.List(ctx, anomalyPrefix)
	if err != nil {
		return 0, fmt.Errorf("listing anomalies: %w", err)
	}
	cutoff := now.Add(-retention).UTC().Format(anomalyIDTime)
	for _, id := range ids {
		if id >= cutoff {
			continue // ids sort by time: this one is recent enough
		}
		if err := s.Delete(ctx, anomalyPrefix+id); err != nil {
			return deleted, fmt.Errorf("deleting anomaly: %w", err)
		}
		deleted++
	}
	keys, err := s.List(ctx, anomalyStatePrefix)
	if err != nil {
		return deleted, fmt.Errorf("listing baselines: %w", err)
	}
	for _, keyID := range keys {
		k, err := b.inventoryKeyEntry(ctx, s, keyID)
		if err != nil {
			return deleted, err
		}
		if k != nil {
			continue
		}
		b.detector.Forget(keyID)
		if err := s.Delete(ctx, anomalyStatePrefix+keyID); err != nil {
			return deleted, fmt.Errorf("deleting a baseline: %w", err)
		}
	}
	return deleted, nil
}
