package anomaly

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/verifyapi"
)

// busyState returns a state fed with two weeks of varied traffic.
func busyState(t testing.TB) *state {
	r := rand.New(rand.NewPCG(1, 2))
	cfg := Defaults()
	s := &state{}
	codes := []string{verifyapi.CodeValid, verifyapi.CodeValid, verifyapi.CodeValid, verifyapi.CodeNotFound,
		verifyapi.CodeInsufficientScope, verifyapi.CodeForbiddenIP, verifyapi.CodeRateLimited, verifyapi.CodeExpired}
	at := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	for i := range 40000 {
		at = at.Add(time.Duration(r.IntN(60)) * time.Second)
		ip := netip.AddrFrom4([4]byte{10, byte(r.IntN(3)), byte(r.IntN(4)), 1})
		if i%7 == 0 {
			ip = netip.MustParseAddr("2001:db8::1")
		}
		if i > 30000 && i%50 == 0 {
			ip = netip.AddrFrom4([4]byte{byte(r.IntN(200)), byte(r.IntN(256)), 1, 1})
		}
		ev := Event{Key: "k", Code: codes[r.IntN(len(codes))], Client: ip, Time: at}
		s.observe(ev, classify(ev.Code), cfg, 0)
	}
	return s
}

func TestStateRoundTrip(t *testing.T) {
	s := busyState(t)
	require.NotZero(t, s.pend.id+uint64(s.fired[0]+s.fired[1]+s.fired[2]), "the test state exercises the rare fields")
	b := s.AppendBinary(nil)
	var got state
	require.NoError(t, got.UnmarshalBinary(b))
	require.Equal(t, *s, got)
	require.Equal(t, b, got.AppendBinary(nil))

	var empty state
	require.NoError(t, got.UnmarshalBinary(empty.AppendBinary(nil)))
	require.Equal(t, empty, got)
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(busyState(f).AppendBinary(nil))
	var empty state
	f.Add(empty.AppendBinary(nil))
	f.Add([]byte{stateVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s state
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		// What decodes encodes back to itself, and the detector can go on with it.
		enc := s.AppendBinary(nil)
		var again state
		require.NoError(t, again.UnmarshalBinary(enc))
		require.Equal(t, s, again)
		cfg := Defaults()
		for i, code := range verifyapi.Codes() {
			ev := Event{Key: "k", Code: code, Client: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}),
				Time: time.Unix(s.min*60, 0).Add(time.Duration(i) * time.Hour)}
			s.observe(ev, classify(code), cfg, 0)
		}
	})
}

func TestUnmarshalRejects(t *testing.T) {
	good := busyState(t).AppendBinary(nil)
	var s state
	require.Error(t, s.UnmarshalBinary(nil))
	require.Error(t, s.UnmarshalBinary([]byte{2}), "unknown version")
	require.Error(t, s.UnmarshalBinary(append(good[:len(good):len(good)], 0)), "trailing bytes")
	for i := 1; i < len(good); i++ {
		require.Error(t, s.UnmarshalBinary(good[:i]), "truncated at %d", i)
	}
}
