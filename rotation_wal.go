package apikey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/mitchellh/mapstructure"
)

// A rotation writes two records: the replacement, then the old key retired to point at
// it. A write-ahead log entry (the framework's WAL, as HashiCorp's openldap plugin uses
// for password rotation) is written before and deleted after both, so a rotation that
// died in between, whose replacement key reached nobody, is rolled back: the old key is
// restored as it was and the replacement's record deleted. Two paths do it:
//
//   - the next rotation of the same key (Vault replays a request once after restarting a
//     crashed plugin, and clients retry) finds the dead rotation's entry and rolls it back
//     before it rotates, so the retry succeeds;
//   - otherwise Vault's rollback manager calls walRollback about once a minute for
//     entries older than rotationWALMinAge.

// walKindRotation is the WAL entry kind of a rotation.
const walKindRotation = "rotation"

// rotationWALMinAge is how old an entry must be before the periodic rollback undoes its
// rotation. A live rotation holds its entry for milliseconds and cannot outlast Vault's
// request timeout (90 s by default), after which its storage calls fail; an older entry
// belongs to a rotation that died.
const rotationWALMinAge = 5 * time.Minute

// rotationWAL is the WAL entry of one rotation. Token is also written into both records
// the rotation changes, so the rollback recognises them: a later attempt of the same
// request writes a replacement with the same key_id (derived from the request id) but
// its own token, which a rollback of the dead attempt must leave alone.
type rotationWAL struct {
	OldKeyID string `json:"old_key_id" mapstructure:"old_key_id"`
	NewKeyID string `json:"new_key_id" mapstructure:"new_key_id"`
	Token    string `json:"token" mapstructure:"token"`
}

func newRotationToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating rotation token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// walRollback is the backend's WALRollback: it undoes a rotation that died.
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, data interface{}) error {
	if kind != walKindRotation {
		// An entry of a kind this version does not know: keeping it would retry forever.
		b.Logger().Warn("dropping a WAL entry of unknown kind", "kind", kind)
		return nil
	}
	var w rotationWAL
	if err := mapstructure.Decode(data, &w); err != nil || w.Token == "" {
		b.Logger().Warn("dropping an unreadable rotation WAL entry", "error", err)
		return nil
	}
	lock := b.keyLock(w.OldKeyID)
	lock.Lock()
	defer lock.Unlock()
	// The entry was read before the lock was taken: a rotation that outlived
	// rotationWALMinAge may have completed, deleted it and delivered its key meanwhile.
	if _, _, pending, err := findRotationWAL(ctx, req.Storage, w.Token); err != nil || !pending {
		return err
	}
	return b.undoRotation(ctx, req.Storage, w)
}

// undoRotation restores the old key and deletes the replacement, each only if it still
// carries the rotation's token. The caller holds the old key's lock. It is idempotent:
// a rollback that fails half-way is retried from its WAL entry.
func (b *backend) undoRotation(ctx context.Context, s logical.Storage, w rotationWAL) error {
	old, err := b.storageKeyEntry(ctx, s, w.OldKeyID)
	if err != nil {
		return err
	}
	if old != nil && old.RotationToken == w.Token && old.ReplacedBy == w.NewKeyID {
		restored := *old
		restored.ReplacedBy, restored.RotationToken, restored.InvalidAfter = "", "", time.Time{}
		if err := b.putKeyEntry(ctx, s, &restored); err != nil {
			return err
		}
	}
	replacement, err := b.storageKeyEntry(ctx, s, w.NewKeyID)
	if err != nil {
		return err
	}
	if replacement != nil && replacement.RotationToken == w.Token {
		if err := b.deleteKeyEntry(ctx, s, w.NewKeyID); err != nil {
			return err
		}
	}
	b.Logger().Info("rolled back a rotation that did not complete", "key_id", w.OldKeyID, "replacement_key_id", w.NewKeyID)
	return nil
}

// rollBackDeadRotation undoes the rotation that retired k if it never completed (its
// WAL entry is still there). The caller holds k's lock, so no rotation of k is in flight
// in this process: an entry that names k is a dead one. It reports whether it rolled
// anything back.
func (b *backend) rollBackDeadRotation(ctx context.Context, s logical.Storage, k *keyEntry) (bool, error) {
	if k.ReplacedBy == "" || k.RotationToken == "" {
		return false, nil
	}
	id, w, found, err := findRotationWAL(ctx, s, k.RotationToken)
	if err != nil || !found {
		return false, err
	}
	if err := b.undoRotation(ctx, s, w); err != nil {
		return false, err
	}
	return true, framework.DeleteWAL(ctx, s, id)
}

// findRotationWAL finds the WAL entry of the rotation with token. Entries exist only
// for rotations in flight or dead, so there are few to read.
func findRotationWAL(ctx context.Context, s logical.Storage, token string) (id string, w rotationWAL, found bool, err error) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return "", w, false, fmt.Errorf("listing WAL entries: %w", err)
	}
	for _, id := range ids {
		entry, err := framework.GetWAL(ctx, s, id)
		if err != nil {
			return "", w, false, fmt.Errorf("reading WAL entry: %w", err)
		}
		if entry == nil || entry.Kind != walKindRotation {
			continue
		}
		var candidate rotationWAL
		if mapstructure.Decode(entry.Data, &candidate) == nil && candidate.Token == token {
			return id, candidate, true, nil
		}
	}
	return "", w, false, nil
}

// errRotationLost is returned when a rotation's records were written but its WAL entry
// could not be deleted: the rotation is undone rather than left for the periodic
// rollback to undo after the client got its key.
var errRotationLost = errors.New("the rotation could not be completed and was rolled back")
