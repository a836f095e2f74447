package dashboard

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one signed-in person: the Vault token the dashboard acts with, kept only in
// this process's memory. Its fields do not change after it is created, so handlers read
// them without a lock.
type session struct {
	// token is the person's Vault token. It is sent to Vault in the X-Vault-Token header
	// and never written anywhere else (pages, URLs, logs, cookies).
	token string
	// owned: the dashboard obtained the token itself (userpass login), so sign-out
	// revokes it. A token the person pasted is theirs and is never revoked.
	owned bool
	// csrf is the per-session token every state-changing form carries.
	csrf string
	// who is the token's display name (lookup-self), for the page header.
	who      string
	policies []string
	method   string // "token" or "userpass"
	created  time.Time
	expires  time.Time

	key  [sha256.Size]byte // the store's map key
	elem *list.Element     // position in the store's recency list
}

// sessionStore holds sessions in memory, bounded: at most max sessions, the least
// recently used one dropped when a new one would exceed it, each dropped at its expiry.
// Sessions are looked up by the SHA-256 of their cookie value, so the map never holds
// the cookie value and lookups do not compare secrets byte by byte.
type sessionStore struct {
	mu     sync.Mutex
	max    int
	byKey  map[[sha256.Size]byte]*session
	recent *list.List // front: most recently used
	now    func() time.Time
	swept  time.Time // last sweep of expired sessions
}

func newSessionStore(max int, now func() time.Time) *sessionStore {
	return &sessionStore{max: max, byKey: map[[sha256.Size]byte]*session{}, recent: list.New(), now: now}
}

// randomToken is n bytes from crypto/rand, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error (it crashes the program instead).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create stores s under a new random id and returns the id (the cookie value). Expired
// sessions are removed first; if the store is still full, the least recently used one
// goes.
func (st *sessionStore) create(s *session) string {
	id := randomToken(32)
	s.key = sha256.Sum256([]byte(id))
	st.mu.Lock()
	defer st.mu.Unlock()
	if now := st.now(); len(st.byKey) >= st.max || now.Sub(st.swept) > time.Minute {
		st.sweepLocked()
		st.swept = now
	}
	for len(st.byKey) >= st.max {
		st.removeLocked(st.recent.Back().Value.(*session))
	}
	s.elem = st.recent.PushFront(s)
	st.byKey[s.key] = s
	return id
}

// get returns the live session for a cookie value, or nil; an expired one is removed.
func (st *sessionStore) get(id string) *session {
	if id == "" || len(id) > 128 {
		return nil
	}
	key := sha256.Sum256([]byte(id))
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.byKey[key]
	if s == nil {
		return nil
	}
	if !st.now().Before(s.expires) {
		st.removeLocked(s)
		return nil
	}
	st.recent.MoveToFront(s.elem)
	return s
}

// remove drops the session of a cookie value and returns it (nil if there was none).
func (st *sessionStore) remove(id string) *session {
	key := sha256.Sum256([]byte(id))
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.byKey[key]
	if s != nil {
		st.removeLocked(s)
	}
	return s
}

func (st *sessionStore) len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.byKey)
}

// sweepLocked removes every expired session.
func (st *sessionStore) sweepLocked() {
	now := st.now()
	for _, s := range st.byKey {
		if !now.Before(s.expires) {
			st.removeLocked(s)
		}
	}
}

func (st *sessionStore) removeLocked(s *session) {
	delete(st.byKey, s.key)
	st.recent.Remove(s.elem)
}

// validCSRF compares a form's CSRF token with the session's in constant time.
func (s *session) validCSRF(got string) bool {
	return len(got) == len(s.csrf) && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}
