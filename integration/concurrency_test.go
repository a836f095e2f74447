//go:build integration

package integration

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// TestConcurrency: 16 goroutines issue, verify, rotate and revoke keys at once through
// the HTTP API for a bounded time, including deliberate races on one key (two rotations;
// a rotation against a revocation). Every answer is checked against what the test knows
// about the key when the answer arrives, and at the end: no duplicate key_id, every
// revoked key NOT_FOUND, every rotated-out key EXPIRED (or NOT_FOUND), every live key
// VALID and listed.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	w := newWorkload(t, "apikey", "load", s.Client, 200)
	w.client = singleClient(fastClient(t, s.Addr, s.RootToken, 30*time.Second))

	stop := time.Now().Add(envDuration(t, "CONCURRENCY_DURATION", 10*time.Second))
	w.Run(16, func() bool { return time.Now().Before(stop) })
	w.Check(t, s.Client, 1000)
	t.Logf("concurrency: %s", w.stats.String())
	require.Zero(t, w.stats.errors.Load(), "requests failed without any fault injected")
	require.Zero(t, w.stats.violations.Load(), "invariant violations: %v", w.Violations())
	require.Positive(t, w.stats.rotated.Load())
	require.Positive(t, w.stats.revoked.Load())
	require.Positive(t, w.stats.races.Load())
}

// keyState is what the test knows about a key.
type keyState int

const (
	stateLive    keyState = iota // verifies VALID
	stateRotated                 // rotated out with grace 0: EXPIRED (NOT_FOUND once its lease ended)
	stateRevoked                 // lease revoked: NOT_FOUND
	stateUnknown                 // a rotation got no answer (fault): resolved from keys/<id> at the end
)

type wkey struct {
	issued
	state keyState
	// claimed: a goroutine has taken the key to change it (rotate or revoke). A claimed
	// key never goes back to the live pool, so an unclaimed live key has not been
	// touched by any state-changing request.
	claimed bool
}

// workloadStats counts what a workload did. errors are requests that failed (no answer,
// 5xx, ...): tolerated while faults are injected, never otherwise; violations are wrong
// answers.
type workloadStats struct {
	issued, verified, rotated, revoked, races, errors, violations, faults atomic.Int64
	// replays: rotations answered "already rotated" after a plugin crash (see
	// isReplayedRotation); orphans: keys found rotated to a key_id nobody received.
	replays, orphans atomic.Int64
}

func (s *workloadStats) ops() int64 {
	return s.issued.Load() + s.verified.Load() + s.rotated.Load() + s.revoked.Load()
}

func (s *workloadStats) String() string {
	out := fmt.Sprintf("%d operations (issue %d, verify %d, rotate %d, revoke %d; %d races on one key), %d faults injected, %d failed requests, %d invariant violations",
		s.ops(), s.issued.Load(), s.verified.Load(), s.rotated.Load(), s.revoked.Load(), s.races.Load(),
		s.faults.Load(), s.errors.Load(), s.violations.Load())
	if r, o := s.replays.Load(), s.orphans.Load(); r+o > 0 {
		out += fmt.Sprintf(" [%d rotations refused as 'already rotated' on Vault's replay after a plugin crash; %d keys rotated to a key nobody received]", r, o)
	}
	return out
}

func (s *workloadStats) add(o *workloadStats) {
	s.issued.Add(o.issued.Load())
	s.verified.Add(o.verified.Load())
	s.rotated.Add(o.rotated.Load())
	s.revoked.Add(o.revoked.Load())
	s.races.Add(o.races.Load())
	s.errors.Add(o.errors.Load())
	s.violations.Add(o.violations.Load())
	s.faults.Add(o.faults.Load())
	s.replays.Add(o.replays.Load())
	s.orphans.Add(o.orphans.Load())
}

// workload drives a random mix of issue / verify / rotate / revoke against one role and
// keeps a model of every key it knows.
type workload struct {
	t           *testing.T
	mount, role string
	// client returns the client for the next request (a random running node of a
	// cluster, or one server's client).
	client func() *api.Client
	// faults: faults are being injected, so failed requests are counted, not
	// violations, and a rotation without answer leaves its key in stateUnknown.
	faults  bool
	maxLive int
	stats   workloadStats

	mu         sync.Mutex
	errLog     []timedErr       // failed requests (the first 10000)
	all        map[string]*wkey // by key_id
	apiKeys    map[string]bool
	live       []*wkey // live and unclaimed
	revoked    []*wkey
	rotated    []*wkey
	unknown    []*wkey
	violations []string
}

// newWorkload writes the role the workload issues from (ttl 1h) with admin.
func newWorkload(t *testing.T, mount, role string, admin *api.Client, maxLive int) *workload {
	t.Helper()
	_, err := admin.Logical().Write(mount+"/roles/"+role, map[string]interface{}{
		"scopes": "orders:read,orders:write", "ttl": "1h", "max_ttl": "24h",
	})
	require.NoError(t, err)
	return &workload{
		t: t, mount: mount, role: role, maxLive: maxLive,
		all: map[string]*wkey{}, apiKeys: map[string]bool{},
	}
}

func singleClient(c *api.Client) func() *api.Client { return func() *api.Client { return c } }

// Run runs n goroutines until more() turns false and waits for them.
func (w *workload) Run(n int, more func() bool) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for more() {
				w.step()
			}
		}()
	}
	wg.Wait()
}

func (w *workload) violate(format string, args ...interface{}) {
	w.stats.violations.Add(1)
	msg := fmt.Sprintf(format, args...)
	w.mu.Lock()
	if len(w.violations) < 50 {
		w.violations = append(w.violations, time.Now().Format("15:04:05.000")+" "+msg)
	}
	w.mu.Unlock()
	w.t.Logf("VIOLATION: %s", msg)
}

// timedErr is a failed request.
type timedErr struct {
	at  time.Time
	op  string
	err string
}

// failed counts a failed request; without faults it is a violation too.
func (w *workload) failed(op string, err error) {
	w.stats.errors.Add(1)
	w.mu.Lock()
	if len(w.errLog) < 10000 {
		w.errLog = append(w.errLog, timedErr{time.Now(), op, strings.Join(strings.Fields(err.Error()), " ")})
	}
	w.mu.Unlock()
	if !w.faults {
		w.violate("%s failed: %v", op, err)
		return
	}
	// Back off a little: a request to a node that is down fails at once, and 8
	// goroutines spinning on that would starve the recovery on 2 cores.
	time.Sleep(50 * time.Millisecond)
}

// Violations returns the first violations recorded.
func (w *workload) Violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

func (w *workload) step() {
	w.mu.Lock()
	nLive := len(w.live)
	w.mu.Unlock()
	switch r := rand.IntN(100); {
	case nLive < 8 || r < 15:
		w.issue()
	case r < 70:
		w.verify()
	case nLive > w.maxLive || r < 82:
		w.revoke()
	case r < 94:
		w.rotate()
	case r < 97:
		w.raceRotate()
	default:
		w.raceRotateRevoke()
	}
}

// add records a newly issued key (from creds or rotate).
func (w *workload) add(k issued) {
	w.mu.Lock()
	dup := ""
	switch {
	case w.all[k.KeyID] != nil:
		dup = "duplicate key_id " + k.KeyID
	case w.apiKeys[k.Key]:
		dup = "duplicate api_key (key_id " + k.KeyID + ")"
	default:
		wk := &wkey{issued: k}
		w.all[k.KeyID] = wk
		w.apiKeys[k.Key] = true
		w.live = append(w.live, wk)
	}
	w.mu.Unlock()
	if dup != "" {
		w.violate("%s", dup)
	}
}

// claim takes a random live key out of the pool for a state change.
func (w *workload) claim() *wkey {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.live) == 0 {
		return nil
	}
	i := rand.IntN(len(w.live))
	k := w.live[i]
	w.live[i] = w.live[len(w.live)-1]
	w.live = w.live[:len(w.live)-1]
	k.claimed = true
	return k
}

func (w *workload) setState(k *wkey, st keyState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k.state = st
	switch st {
	case stateRevoked:
		w.revoked = append(w.revoked, k)
	case stateRotated:
		w.rotated = append(w.rotated, k)
	case stateUnknown:
		w.unknown = append(w.unknown, k)
	case stateLive:
		k.claimed = false
		w.live = append(w.live, k)
	}
}

func issuedFromSecret(sec *api.Secret) (issued, error) {
	if sec == nil || sec.Data == nil {
		return issued{}, errors.New("no data in the response")
	}
	key, _ := sec.Data["api_key"].(string)
	id, _ := sec.Data["key_id"].(string)
	if key == "" || id == "" || sec.LeaseID == "" {
		return issued{}, fmt.Errorf("response without api_key, key_id or lease: %v (lease %q)", sec.Data, sec.LeaseID)
	}
	if !strings.Contains(key, id) {
		return issued{}, fmt.Errorf("key_id %s is not in its key", id)
	}
	return issued{Key: key, KeyID: id, LeaseID: sec.LeaseID, Secret: sec}, nil
}

func (w *workload) issue() {
	sec, err := w.client().Logical().Read(w.mount + "/creds/" + w.role)
	if err != nil {
		w.failed("issue", err)
		return
	}
	k, err := issuedFromSecret(sec)
	if err != nil {
		w.violate("issue: %v", err)
		return
	}
	w.stats.issued.Add(1)
	w.add(k)
}

// verify checks one key: mostly a live one, sometimes a revoked or rotated-out one.
func (w *workload) verify() {
	w.mu.Lock()
	var k *wkey
	switch r := rand.IntN(100); {
	case r < 15 && len(w.revoked) > 0:
		k = w.revoked[rand.IntN(len(w.revoked))]
	case r < 30 && len(w.rotated) > 0:
		k = w.rotated[rand.IntN(len(w.rotated))]
	case len(w.live) > 0:
		k = w.live[rand.IntN(len(w.live))]
	}
	var before keyState
	if k != nil {
		before = k.state
	}
	w.mu.Unlock()
	if k == nil {
		return
	}
	res, err := tryVerify(w.client(), w.mount, k.Key)
	if err != nil {
		w.failed("verify", err)
		return
	}
	w.stats.verified.Add(1)
	w.mu.Lock()
	untouched := !k.claimed
	w.mu.Unlock()
	switch before {
	case stateLive:
		if untouched && (res.Code != codeValid || !res.Valid) {
			w.violate("live key %s (no rotate or revoke started) verified %s valid=%v", k.KeyID, res.Code, res.Valid)
		}
		if !untouched && res.Code != codeValid && res.Code != codeExpired && res.Code != codeNotFound {
			w.violate("key %s being rotated or revoked verified %s", k.KeyID, res.Code)
		}
	case stateRevoked:
		if res.Code != codeNotFound || res.Valid {
			w.violate("revoked key %s verified %s valid=%v", k.KeyID, res.Code, res.Valid)
		}
	case stateRotated:
		if (res.Code != codeExpired && res.Code != codeNotFound) || res.Valid {
			w.violate("rotated-out key %s verified %s valid=%v", k.KeyID, res.Code, res.Valid)
		}
	}
}

// expectCode verifies key right after a state change: the next verify must already see it
// (the verify cache is kept exact).
func (w *workload) expectCode(what, key, keyID string, want ...string) {
	res, err := tryVerify(w.client(), w.mount, key)
	if err != nil {
		w.failed("verify after "+what, err)
		return
	}
	w.stats.verified.Add(1)
	for _, c := range want {
		if res.Code == c {
			return
		}
	}
	w.violate("right after %s, key %s verified %s (want %v)", what, keyID, res.Code, want)
}

// isRefusal: Vault answered 400 (the engine refused the request).
func isRefusal(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest
}

// isReplayedRotation: a rotation refused because the key "was already rotated". When the
// plugin process dies during a request, Vault starts it again and sends the same request
// once more (builtin/plugin/backend.go, lazyLoadBackend: "Try once more"); if the first
// attempt had rotated the key before the plugin died, the replay is refused this way,
// although the client never got the new key. Only possible while faults are injected.
func isReplayedRotation(err error) bool {
	return isRefusal(err) && strings.Contains(err.Error(), "was already rotated")
}

// rotateOnce rotates k (grace 0): the new key, or the error.
func (w *workload) rotateOnce(k *wkey) (issued, error) {
	sec, err := w.client().Logical().Write(w.mount+"/creds/"+w.role+"/rotate", map[string]interface{}{"key_id": k.KeyID})
	if err != nil {
		return issued{}, err
	}
	n, err := issuedFromSecret(sec)
	if err != nil {
		return issued{}, fmt.Errorf("rotate answered without a key: %w", err)
	}
	if old, _ := sec.Data["old_key_id"].(string); old != k.KeyID {
		return issued{}, fmt.Errorf("rotate of %s answered old_key_id %q", k.KeyID, old)
	}
	return n, nil
}

func (w *workload) rotate() {
	k := w.claim()
	if k == nil {
		return
	}
	n, err := w.rotateOnce(k)
	if err != nil {
		switch {
		case w.faults && isReplayedRotation(err):
			// Vault replays a request whose plugin died under it; the first attempt
			// had rotated the key (see isReplayedRotation).
			w.stats.replays.Add(1)
			w.failed("rotate", err)
		case isRefusal(err) || !w.faults:
			w.violate("rotate of live key %s: %v", k.KeyID, err)
		default:
			w.failed("rotate", err)
		}
		w.setState(k, stateUnknown)
		return
	}
	w.stats.rotated.Add(1)
	w.setState(k, stateRotated)
	w.expectCode("its rotation", k.Key, k.KeyID, codeExpired)
	// Checked before the new key joins the pool, where another goroutine could take it.
	w.expectCode("being issued by a rotation", n.Key, n.KeyID, codeValid)
	w.add(n)
}

// revokeLease revokes k's lease through sys/leases/revoke, retrying (it is idempotent)
// while faults are injected.
func (w *workload) revokeLease(k *wkey) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := w.client().Sys().Revoke(k.LeaseID)
		if err == nil {
			return nil
		}
		if !w.faults || time.Now().After(deadline) {
			return err
		}
		w.failed("revoke", err)
		time.Sleep(200 * time.Millisecond)
	}
}

func (w *workload) revoke() {
	k := w.claim()
	if k == nil {
		return
	}
	if err := w.revokeLease(k); err != nil {
		w.violate("revoke of %s: %v", k.KeyID, err)
		w.setState(k, stateUnknown)
		return
	}
	w.stats.revoked.Add(1)
	w.setState(k, stateRevoked)
	w.expectCode("its revocation", k.Key, k.KeyID, codeNotFound)
}

// raceRotate rotates one key twice at once: exactly one rotation may win.
func (w *workload) raceRotate() {
	k := w.claim()
	if k == nil {
		return
	}
	w.stats.races.Add(1)
	var (
		wg   sync.WaitGroup
		news [2]issued
		errs [2]error
	)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			news[i], errs[i] = w.rotateOnce(k)
		}()
	}
	wg.Wait()
	won := 0
	for i := range 2 {
		if errs[i] == nil {
			won++
			w.stats.rotated.Add(1)
			w.add(news[i])
		}
	}
	switch {
	case won == 2:
		w.violate("key %s was rotated twice at once (new keys %s and %s)", k.KeyID, news[0].KeyID, news[1].KeyID)
		w.setState(k, stateRotated)
	case won == 1:
		lost := errs[0]
		if lost == nil {
			lost = errs[1]
		}
		if !isRefusal(lost) {
			w.failed("concurrent rotate", lost)
		}
		w.setState(k, stateRotated)
		w.expectCode("its rotation", k.Key, k.KeyID, codeExpired)
	default:
		replayed := isReplayedRotation(errs[0]) || isReplayedRotation(errs[1])
		if !w.faults || isRefusal(errs[0]) && isRefusal(errs[1]) && !replayed {
			w.violate("neither of two concurrent rotations of %s succeeded: %v; %v", k.KeyID, errs[0], errs[1])
		} else {
			if replayed {
				w.stats.replays.Add(1)
			}
			w.failed("concurrent rotate", errs[0])
		}
		w.setState(k, stateUnknown)
	}
}

// raceRotateRevoke rotates a key while its lease is revoked: the revocation always
// succeeds; the rotation may succeed (then its new key is live) or be refused; the old
// key ends NOT_FOUND either way.
func (w *workload) raceRotateRevoke() {
	k := w.claim()
	if k == nil {
		return
	}
	w.stats.races.Add(1)
	var (
		wg        sync.WaitGroup
		n         issued
		rotErr    error
		revokeErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		n, rotErr = w.rotateOnce(k)
	}()
	go func() {
		defer wg.Done()
		revokeErr = w.revokeLease(k)
	}()
	wg.Wait()
	if rotErr == nil {
		w.stats.rotated.Add(1)
		w.expectCode("a rotation that raced a revocation", n.Key, n.KeyID, codeValid)
		w.add(n)
	} else if !isRefusal(rotErr) {
		w.failed("rotate racing a revoke", rotErr)
	}
	if revokeErr != nil {
		w.violate("revoke of %s racing a rotation: %v", k.KeyID, revokeErr)
		w.setState(k, stateUnknown)
		return
	}
	w.stats.revoked.Add(1)
	w.setState(k, stateRevoked)
	w.expectCode("its revocation (racing a rotation)", k.Key, k.KeyID, codeNotFound)
}

// Check verifies the model against the server after the workload stopped: every live key
// VALID and listed, up to sample revoked keys NOT_FOUND and not listed, up to sample
// rotated-out keys EXPIRED or NOT_FOUND, and keys in stateUnknown as keys/<id> says.
// Violations are counted in the stats (and logged).
func (w *workload) Check(t *testing.T, c *api.Client, sample int) {
	t.Helper()
	w.mu.Lock()
	live := append([]*wkey(nil), w.live...)
	revoked := sampleKeys(w.revoked, sample)
	rotated := sampleKeys(w.rotated, sample)
	unknown := append([]*wkey(nil), w.unknown...)
	w.mu.Unlock()

	type job struct {
		k    *wkey
		want []string
	}
	var jobs []job
	for _, k := range live {
		jobs = append(jobs, job{k, []string{codeValid}})
	}
	for _, k := range revoked {
		jobs = append(jobs, job{k, []string{codeNotFound}})
	}
	for _, k := range rotated {
		jobs = append(jobs, job{k, []string{codeExpired, codeNotFound}})
	}
	for _, k := range unknown {
		// A rotation without answer: keys/<id> tells whether it happened.
		var sec *api.Secret
		err := retry(5, func() (err error) { sec, err = c.Logical().Read(w.mount + "/keys/" + k.KeyID); return err })
		switch {
		case err != nil:
			w.violate("reading keys/%s: %v", k.KeyID, err)
		case sec == nil:
			jobs = append(jobs, job{k, []string{codeNotFound}})
		case sec.Data["replaced_by"] != nil:
			jobs = append(jobs, job{k, []string{codeExpired, codeNotFound}})
			w.mu.Lock()
			known := w.all[fmt.Sprint(sec.Data["replaced_by"])] != nil
			w.mu.Unlock()
			if !known {
				w.stats.orphans.Add(1)
				w.describeOrphan(t, c, k.KeyID, fmt.Sprint(sec.Data["replaced_by"]))
			}
		default:
			jobs = append(jobs, job{k, []string{codeValid}})
		}
	}

	ch := make(chan job)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				var res verifyResult
				err := retry(5, func() (err error) { res, err = tryVerify(c, w.mount, j.k.Key); return err })
				if err != nil {
					w.violate("final verify of %s: %v", j.k.KeyID, err)
					continue
				}
				ok := false
				for _, c := range j.want {
					ok = ok || res.Code == c
				}
				if !ok || res.Valid != (res.Code == codeValid) {
					w.violate("at the end, key %s (state %d) verifies %s valid=%v, want %v", j.k.KeyID, j.k.state, res.Code, res.Valid, j.want)
				}
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()

	// The inventory lists every live key and no revoked one.
	var list *api.Secret
	err := retry(5, func() (err error) { list, err = c.Logical().List(w.mount + "/keys"); return err })
	if err != nil {
		w.violate("listing keys: %v", err)
		return
	}
	listed := map[string]bool{}
	if list != nil {
		if ks, ok := list.Data["keys"].([]interface{}); ok {
			for _, id := range ks {
				s, _ := id.(string)
				listed[s] = true
			}
		}
	}
	for _, k := range live {
		if !listed[k.KeyID] {
			w.violate("live key %s missing from %s/keys", k.KeyID, w.mount)
		}
	}
	for _, k := range revoked {
		if listed[k.KeyID] {
			w.violate("revoked key %s still listed in %s/keys", k.KeyID, w.mount)
		}
	}
	t.Logf("checked %d live, %d revoked, %d rotated-out and %d undetermined keys (of %d issued)",
		len(live), len(revoked), len(rotated), len(unknown), len(w.all))
}

// describeOrphan logs what is left of a key that a rotation without answer created:
// its record (keys/<id>) and the rotation's lease, if any.
func (w *workload) describeOrphan(t *testing.T, c *api.Client, oldID, newID string) {
	t.Helper()
	rec, err := c.Logical().Read(w.mount + "/keys/" + newID)
	record := "no record"
	switch {
	case err != nil:
		record = "record unreadable: " + err.Error()
	case rec != nil:
		record = fmt.Sprintf("record expires_at %v", rec.Data["expires_at"])
	}
	leases := "no lease"
	list, err := c.Logical().List("sys/leases/lookup/" + w.mount + "/creds/" + w.role + "/rotate/")
	switch {
	case err != nil:
		leases = "leases unreadable: " + err.Error()
	case list != nil:
		leases = fmt.Sprintf("leases under %s/creds/%s/rotate/: %v", w.mount, w.role, list.Data["keys"])
	}
	t.Logf("key %s was rotated to %s, which no client received (the rotation got no answer): %s; %s", oldID, newID, record, leases)
}

// sampleKeys returns up to n of keys, chosen at random.
func sampleKeys(keys []*wkey, n int) []*wkey {
	if len(keys) <= n {
		return append([]*wkey(nil), keys...)
	}
	out := make([]*wkey, 0, n)
	for _, i := range rand.Perm(len(keys))[:n] {
		out = append(out, keys[i])
	}
	sort.Slice(out, func(a, b int) bool { return out[a].KeyID < out[b].KeyID })
	return out
}

// retry calls f up to n times, 500 ms apart, until it succeeds.
func retry(n int, f func() error) error {
	var err error
	for i := 0; i < n; i++ {
		if err = f(); err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

// envDuration reads a duration from the environment (default def).
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "%s=%q", name, v)
	return d
}

// faultWindow is a time span in which a fault was injected and the system recovered.
type faultWindow struct{ from, to time.Time }

// ErrorReport counts the failed requests outside the given windows and summarises the
// most frequent failures.
func (w *workload) ErrorReport(windows []faultWindow) (outside int, summary string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	counts := map[string]int{}
	var outsideSamples []string
	for _, e := range w.errLog {
		in := false
		for _, fw := range windows {
			in = in || (!e.at.Before(fw.from) && !e.at.After(fw.to))
		}
		if !in {
			outside++
			if len(outsideSamples) < 5 {
				outsideSamples = append(outsideSamples, e.at.Format("15:04:05.000")+" "+e.op+": "+e.err)
			}
		}
		counts[e.op+": "+errorKind(e.err)]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(a, b int) bool { return counts[kinds[a]] > counts[kinds[b]] })
	var b strings.Builder
	for i, k := range kinds {
		if i == 6 {
			break
		}
		fmt.Fprintf(&b, "\n  %5d× %s", counts[k], k)
	}
	for _, s := range outsideSamples {
		fmt.Fprintf(&b, "\n  outside any fault window: %s", s)
	}
	return outside, b.String()
}

// errorKind shortens an API error to its gist (status code and the last error text).
func errorKind(msg string) string {
	code := ""
	if i := strings.Index(msg, "Code: "); i >= 0 {
		code = strings.TrimSuffix(strings.Fields(msg[i+6:])[0], ".")
	}
	if i := strings.LastIndex(msg, "* "); i >= 0 {
		msg = msg[i+2:]
	}
	if len(msg) > 140 {
		msg = msg[:140]
	}
	if code != "" {
		return code + " " + msg
	}
	return msg
}
