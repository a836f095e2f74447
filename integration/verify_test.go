//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestVerifyCodes checks every verify code the engine answers today, with a token that
// only has the verifier policy, through the API and the CLI.
func TestVerifyCodes(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	root := s.RootToken
	verifierToken := s.VerifierToken(t)
	verifier := s.NewClient(t, verifierToken)

	s.MustCLI(t, root, "write", "apikey/roles/svc", "scopes=orders:read,orders:write,users:*", "ttl=1h", "max_ttl=24h")
	k := issueCLI(t, s, root, "apikey", "svc", "name=checkout", "metadata=team=payments")
	requireWellFormed(t, k.Key, k.KeyID)

	t.Run("VALID", func(t *testing.T) {
		r := requireCode(t, verifier, "apikey", k.Key, codeValid)
		require.Equal(t, k.KeyID, str(t, r.Data, "key_id"))
		require.Equal(t, "svc", str(t, r.Data, "role"))
		require.Equal(t, "checkout", str(t, r.Data, "name"))
		require.ElementsMatch(t, []string{"orders:read", "orders:write", "users:*"}, strs(t, r.Data, "scopes"))
		require.Equal(t, "payments", strMap(t, r.Data, "metadata")["team"])
		require.WithinDuration(t, time.Now().Add(time.Hour), timeField(t, r.Data, "expires_at"), time.Minute)
		ttl := num(t, r.Data, "ttl")
		require.True(t, ttl > 3500 && ttl <= 3600, "ttl %d", ttl)

		requireCode(t, verifier, "apikey", k.Key, codeValid, "orders:read")
		requireCode(t, verifier, "apikey", k.Key, codeValid, "orders:read", "orders:write")
		requireCode(t, verifier, "apikey", k.Key, codeValid, "users:delete") // granted by users:*
	})

	t.Run("VALID via CLI", func(t *testing.T) {
		sec := s.CLISecret(t, verifierToken, "write", "-format=json", "apikey/verify", "api_key="+k.Key, "scopes=orders:read")
		require.Equal(t, codeValid, str(t, sec.Data, "code"))
		require.Equal(t, true, sec.Data["valid"])
		require.Equal(t, k.KeyID, str(t, sec.Data, "key_id"))
		requireNoKeyMaterial(t, sec.Data, k.Key)
	})

	t.Run("INSUFFICIENT_SCOPE", func(t *testing.T) {
		r := requireCode(t, verifier, "apikey", k.Key, codeInsufficientScope, "admin:all")
		require.Equal(t, k.KeyID, str(t, r.Data, "key_id"))
		requireCode(t, verifier, "apikey", k.Key, codeInsufficientScope, "orders:read", "orders:delete")
		requireCode(t, verifier, "apikey", k.Key, codeInsufficientScope, "users") // "users:*" is not "users"

		sec := s.CLISecret(t, verifierToken, "write", "-format=json", "apikey/verify", "api_key="+k.Key, "scopes=orders:read,billing:read")
		require.Equal(t, codeInsufficientScope, str(t, sec.Data, "code"))
		require.Equal(t, false, sec.Data["valid"])

		// A key narrowed at issue does not have the role's other scopes.
		narrow := issueCLI(t, s, root, "apikey", "svc", "scopes=orders:read")
		requireCode(t, verifier, "apikey", narrow.Key, codeValid, "orders:read")
		requireCode(t, verifier, "apikey", narrow.Key, codeInsufficientScope, "orders:write")
	})

	t.Run("MALFORMED", func(t *testing.T) {
		last := k.Key[len(k.Key)-1]
		flipped := byte('A')
		if last == 'A' {
			flipped = 'B'
		}
		for name, bad := range map[string]string{
			"not a key":       "not-a-key",
			"no body":         "vk_",
			"short":           k.Key[:len(k.Key)-1],
			"long":            k.Key + "0",
			"bad checksum":    k.Key[:len(k.Key)-1] + string(flipped),
			"other prefix":    "xy" + k.Key[2:],
			"bad charset":     k.Key[:10] + "-" + k.Key[11:],
			"uppercase pfx":   "VK" + k.Key[2:],
			"whitespace":      " " + k.Key,
			"very long input": strings.Repeat("a", 5000),
		} {
			t.Run(name, func(t *testing.T) {
				requireCode(t, verifier, "apikey", bad, codeMalformed)
			})
		}
		sec := s.CLISecret(t, verifierToken, "write", "-format=json", "apikey/verify", "api_key=vk_nope")
		require.Equal(t, codeMalformed, str(t, sec.Data, "code"))
	})

	t.Run("NOT_FOUND", func(t *testing.T) {
		// Well-formed, never issued.
		requireCode(t, verifier, "apikey", forgeKey(t, "vk", ""), codeNotFound)
		// Well-formed, a real key_id but not its secret: hash mismatch.
		requireCode(t, verifier, "apikey", forgeKey(t, "vk", k.KeyID), codeNotFound)
		// Another prefix, well-formed.
		requireCode(t, verifier, "apikey", forgeKey(t, "sk", ""), codeNotFound)
	})

	t.Run("missing api_key is a 400", func(t *testing.T) {
		_, err := verifier.Logical().Write("apikey/verify", map[string]interface{}{})
		requireStatus(t, err, 400)
		_, err = verifier.Logical().Write("apikey/verify", map[string]interface{}{"api_key": ""})
		requireStatus(t, err, 400)
	})

	t.Run("DISABLED", func(t *testing.T) {
		d := issueCLI(t, s, root, "apikey", "svc")
		requireCode(t, verifier, "apikey", d.Key, codeValid)

		s.MustCLI(t, root, "write", "apikey/keys/"+d.KeyID, "disabled=true")
		r := requireCode(t, verifier, "apikey", d.Key, codeDisabled)
		require.Equal(t, d.KeyID, str(t, r.Data, "key_id"))
		// Disabled wins over scope checks.
		requireCode(t, verifier, "apikey", d.Key, codeDisabled, "admin:all")

		sec := s.CLISecret(t, root, "read", "-format=json", "apikey/keys/"+d.KeyID)
		require.Equal(t, true, sec.Data["disabled"])
		requireNoKeyMaterial(t, sec.Data, d.Key)

		s.MustCLI(t, root, "write", "apikey/keys/"+d.KeyID, "disabled=false")
		requireCode(t, verifier, "apikey", d.Key, codeValid)
	})

	t.Run("FORBIDDEN_IP", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/bound", "scopes=orders:read", "bound_cidrs=10.0.0.0/8,2001:db8::/32", "ttl=1h", "max_ttl=2h")
		b := issueCLI(t, s, root, "apikey", "bound")
		for ip, want := range map[string]string{
			"10.1.2.3":        codeValid,
			"2001:db8::1":     codeValid,
			"::ffff:10.9.9.9": codeValid,
			"192.168.1.1":     codeForbiddenIP,
			"2001:db9::1":     codeForbiddenIP,
		} {
			r := verifyData(t, verifier, "apikey", map[string]interface{}{"api_key": b.Key, "client_ip": ip})
			require.Equal(t, want, r.Code, "client_ip %s", ip)
			require.Equal(t, want == codeValid, r.Valid)
		}
		r := verifyData(t, verifier, "apikey", map[string]interface{}{"api_key": b.Key})
		require.Equal(t, codeForbiddenIP, r.Code, "a key with bound_cidrs needs client_ip")
		require.Equal(t, b.KeyID, str(t, r.Data, "key_id"))
		// FORBIDDEN_IP is checked before the scopes.
		r = verifyData(t, verifier, "apikey", map[string]interface{}{"api_key": b.Key, "client_ip": "192.168.1.1", "scopes": []string{"admin"}})
		require.Equal(t, codeForbiddenIP, r.Code)
		_, err := tryVerifyData(verifier, "apikey", map[string]interface{}{"api_key": b.Key, "client_ip": "not-an-ip"})
		requireStatus(t, err, 400)
	})

	t.Run("RATE_LIMITED", func(t *testing.T) {
		// 1 request per 1000 s with a burst of 2: the third verify in a row is limited.
		s.MustCLI(t, root, "write", "apikey/roles/limited", "scopes=orders:read", "rate_limit=0.001", "rate_limit_burst=2", "ttl=1h", "max_ttl=2h")
		l := issueCLI(t, s, root, "apikey", "limited")
		requireCode(t, verifier, "apikey", l.Key, codeValid)
		requireCode(t, verifier, "apikey", l.Key, codeValid)
		r := requireCode(t, verifier, "apikey", l.Key, codeRateLimited)
		require.Greater(t, num(t, r.Data, "retry_after"), int64(0), "retry_after")
		require.Equal(t, l.KeyID, str(t, r.Data, "key_id"))
		// Other keys of the role have their own bucket.
		requireCode(t, verifier, "apikey", issueCLI(t, s, root, "apikey", "limited").Key, codeValid)
	})

	t.Run("USAGE_EXCEEDED", func(t *testing.T) {
		s.MustCLI(t, root, "write", "apikey/roles/quota", "scopes=orders:read", "max_uses=3", "ttl=1h", "max_ttl=2h")
		q := issueCLI(t, s, root, "apikey", "quota")
		r := requireCode(t, verifier, "apikey", q.Key, codeValid)
		require.EqualValues(t, 2, num(t, r.Data, "remaining_uses"))
		r = verifyData(t, verifier, "apikey", map[string]interface{}{"api_key": q.Key, "cost": 2})
		require.Equal(t, codeValid, r.Code)
		require.EqualValues(t, 0, num(t, r.Data, "remaining_uses"))
		r = requireCode(t, verifier, "apikey", q.Key, codeUsageExceeded)
		require.EqualValues(t, 0, num(t, r.Data, "remaining_uses"))
		require.Equal(t, q.KeyID, str(t, r.Data, "key_id"))
		// A refused use is not counted and a key without max_uses has no remaining_uses.
		require.NotContains(t, requireCode(t, verifier, "apikey", k.Key, codeValid).Data, "remaining_uses")
	})

	t.Run("EXPIRED after rotation", func(t *testing.T) {
		old := issueCLI(t, s, root, "apikey", "svc", "name=rotating")
		sec := s.CLISecret(t, root, "write", "-format=json", "apikey/creds/svc/rotate", "key_id="+old.KeyID)
		repl := issuedFrom(t, sec)
		require.NotEqual(t, old.KeyID, repl.KeyID)
		require.NotEqual(t, old.LeaseID, repl.LeaseID, "the replacement is a new lease")
		require.Equal(t, "rotating", str(t, repl.Secret.Data, "name"))
		requireCode(t, verifier, "apikey", repl.Key, codeValid, "orders:read")
		// Without a grace period the old key stops at once, while its lease still exists.
		r := requireCode(t, verifier, "apikey", old.Key, codeExpired)
		require.Equal(t, old.KeyID, str(t, r.Data, "key_id"))
		require.False(t, r.Valid)
		// A key is rotated once.
		s.CLIFail(t, root, "write", "apikey/creds/svc/rotate", "key_id="+old.KeyID)

		// With a grace period the old key keeps working.
		graced := issueCLI(t, s, root, "apikey", "svc")
		sec = s.CLISecret(t, root, "write", "-format=json", "apikey/creds/svc/rotate", "key_id="+graced.KeyID, "grace_period=1h")
		requireCode(t, verifier, "apikey", issuedFrom(t, sec).Key, codeValid)
		requireCode(t, verifier, "apikey", graced.Key, codeValid)
	})

	t.Run("EXPIRED", func(t *testing.T) {
		// A key's expires_at and its lease end at (nearly) the same moment; once the lease
		// is revoked the key is NOT_FOUND. EXPIRED is what verify answers between the two:
		// expires_at is stored at second precision, so the window is the sub-second part
		// of the issue time. Issue late in a second to widen it, watch it from the lease's
		// own expire_time, and require that verify said EXPIRED (not VALID) in it.
		s.MustCLI(t, root, "write", "apikey/roles/short", "scopes=orders:read", "ttl=2s", "max_ttl=2s")
		var seen []string
		for attempt := 1; attempt <= 3; attempt++ {
			sleepUntilSubsecond(700 * time.Millisecond)
			e := issueAPI(t, s.Client, "apikey", "short", nil)
			expiresAt := timeField(t, e.Secret.Data, "expires_at")
			lease, err := s.Client.Sys().Lookup(e.LeaseID)
			require.NoError(t, err)
			leaseEnd, err := time.Parse(time.RFC3339Nano, str(t, lease.Data, "expire_time"))
			require.NoError(t, err)
			t.Logf("attempt %d: expires_at %s, lease expire_time %s", attempt, expiresAt.Format(time.RFC3339Nano), leaseEnd.Format(time.RFC3339Nano))
			require.False(t, expiresAt.After(leaseEnd.Add(time.Second)), "expires_at later than the lease")

			requireCode(t, verifier, "apikey", e.Key, codeValid)
			time.Sleep(time.Until(expiresAt))
			seen = seen[:0]
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				r := verifyKey(t, verifier, "apikey", e.Key)
				if len(seen) == 0 || seen[len(seen)-1] != r.Code {
					seen = append(seen, r.Code)
				}
				if r.Code == codeExpired {
					// Checked on this very answer: the next one may already be NOT_FOUND.
					require.False(t, r.Valid)
					requireNoKeyMaterial(t, r.Data, e.Key)
					require.EqualValues(t, 0, num(t, r.Data, "ttl"))
					require.Equal(t, e.KeyID, str(t, r.Data, "key_id"))
					require.Equal(t, "short", str(t, r.Data, "role"))
				}
				if r.Code == codeNotFound {
					break
				}
				require.NotEqual(t, codeValid, r.Code, "a key past expires_at (%s) verified VALID at %s", expiresAt, time.Now())
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("attempt %d: verify answered %v", attempt, seen)
			require.Equal(t, codeNotFound, seen[len(seen)-1], "the expired lease was not revoked within 10s")
			for _, c := range seen {
				if c == codeExpired {
					return
				}
			}
		}
		t.Fatalf("verify never answered EXPIRED between expires_at and the lease's revocation (last codes: %v)", seen)
	})
}

// sleepUntilSubsecond sleeps until the wall clock's sub-second part is at least frac.
func sleepUntilSubsecond(frac time.Duration) {
	now := time.Now()
	sub := time.Duration(now.Nanosecond())
	if sub < frac {
		time.Sleep(frac - sub)
	} else if sub > frac+200*time.Millisecond {
		time.Sleep(time.Second - sub + frac)
	}
}

// TestPolicies loads policies/*.hcl and checks each role of person can do its job and
// nothing else.
func TestPolicies(t *testing.T) {
	t.Parallel()
	s := Setup(t)
	for _, p := range []string{"operator", "auditor"} {
		s.WritePolicy(t, p)
	}
	operatorToken := s.Token(t, "operator")
	issuerToken := s.Token(t, s.WriteRolePolicy(t, "issuer", "app"))
	verifierToken := s.VerifierToken(t)
	auditorToken := s.Token(t, "auditor")
	operator := s.NewClient(t, operatorToken)
	issuer := s.NewClient(t, issuerToken)
	verifier := s.NewClient(t, verifierToken)
	auditor := s.NewClient(t, auditorToken)

	var k issued
	t.Run("operator", func(t *testing.T) {
		s.MustCLI(t, operatorToken, "write", "apikey/roles/app", "scopes=orders:read", "ttl=1h", "max_ttl=24h")
		s.MustCLI(t, operatorToken, "write", "apikey/roles/app", "ttl=2h")
		s.MustCLI(t, operatorToken, "read", "apikey/roles/app")
		require.Contains(t, s.MustCLI(t, operatorToken, "list", "apikey/roles"), "app")
		s.MustCLI(t, operatorToken, "read", "apikey/config")
		s.MustCLI(t, operatorToken, "write", "-force", "apikey/tidy")
		s.MustCLI(t, operatorToken, "write", "apikey/roles/tmp", "scopes=x")
		s.MustCLI(t, operatorToken, "delete", "apikey/roles/tmp")

		_, err := operator.Logical().Read("apikey/creds/app")
		requireForbidden(t, err)
		_, err = operator.Logical().Write("apikey/verify", map[string]interface{}{"api_key": "vk_x"})
		requireForbidden(t, err)
		// Mount management is the admin's.
		requireCLIDenied(t, s.CLIFail(t, operatorToken, "secrets", "tune", "-max-lease-ttl=1h", "apikey/"))
		requireCLIDenied(t, s.CLIFail(t, operatorToken, "secrets", "disable", "apikey/"))
	})

	t.Run("issuer", func(t *testing.T) {
		k = issueCLI(t, s, issuerToken, "apikey", "app")
		issueAPI(t, issuer, "apikey", "app", map[string]interface{}{"name": "x"})

		_, err := issuer.Logical().Write("apikey/verify", map[string]interface{}{"api_key": k.Key})
		requireForbidden(t, err)
		requireCLIDenied(t, s.CLIFail(t, issuerToken, "write", "apikey/verify", "api_key="+k.Key))
		_, err = issuer.Logical().List("apikey/keys")
		requireForbidden(t, err)
		requireCLIDenied(t, s.CLIFail(t, issuerToken, "list", "apikey/keys"))
		_, err = issuer.Logical().Read("apikey/keys/" + k.KeyID)
		requireForbidden(t, err)
		_, err = issuer.Logical().Write("apikey/roles/app", map[string]interface{}{"scopes": "admin:all"})
		requireForbidden(t, err)
		_, err = issuer.Logical().Read("apikey/roles/app")
		requireForbidden(t, err)
	})

	t.Run("verifier", func(t *testing.T) {
		require.NotEmpty(t, k.Key)
		requireCode(t, verifier, "apikey", k.Key, codeValid, "orders:read")

		_, err := verifier.Logical().Read("apikey/creds/app")
		requireForbidden(t, err)
		requireCLIDenied(t, s.CLIFail(t, verifierToken, "read", "apikey/creds/app"))
		_, err = verifier.Logical().Write("apikey/creds/app", map[string]interface{}{"scopes": "orders:read"})
		requireForbidden(t, err)
		_, err = verifier.Logical().List("apikey/keys")
		requireForbidden(t, err)
		_, err = verifier.Logical().Read("apikey/roles/app")
		requireForbidden(t, err)
	})

	t.Run("auditor", func(t *testing.T) {
		require.NotEmpty(t, k.KeyID)
		list, err := auditor.Logical().List("apikey/keys")
		require.NoError(t, err)
		require.NotNil(t, list)
		require.Contains(t, list.Data["keys"], k.KeyID)
		info, ok := list.Data["key_info"].(map[string]interface{})
		require.True(t, ok, "keys list has no key_info: %v", list.Data)
		ki, ok := info[k.KeyID].(map[string]interface{})
		require.True(t, ok, "key_info lacks %s", k.KeyID)
		require.Equal(t, "app", str(t, ki, "role"))
		require.Contains(t, ki, "expires_at")
		require.Contains(t, ki, "name")
		out := s.MustCLI(t, auditorToken, "list", "apikey/keys")
		require.Contains(t, out, k.KeyID)
		out = s.MustCLI(t, auditorToken, "list", "-detailed", "apikey/keys")
		require.Contains(t, out, k.KeyID)
		require.Contains(t, out, "app")
		require.NotContains(t, out, k.Key)

		sec, err := auditor.Logical().Read("apikey/keys/" + k.KeyID)
		require.NoError(t, err)
		require.NotNil(t, sec)
		require.Equal(t, "app", str(t, sec.Data, "role"))
		requireNoKeyMaterial(t, sec.Data, k.Key)
		s.MustCLI(t, auditorToken, "read", "apikey/keys/"+k.KeyID)

		_, err = auditor.Logical().Read("apikey/creds/app")
		requireForbidden(t, err)
		requireCLIDenied(t, s.CLIFail(t, auditorToken, "read", "apikey/creds/app"))
		_, err = auditor.Logical().Write("apikey/keys/"+k.KeyID, map[string]interface{}{"disabled": true})
		requireForbidden(t, err)
		_, err = auditor.Logical().Delete("apikey/keys/" + k.KeyID)
		requireForbidden(t, err)
		_, err = auditor.Logical().Write("apikey/verify", map[string]interface{}{"api_key": k.Key})
		requireForbidden(t, err)
	})

	t.Run("operator manages keys", func(t *testing.T) {
		_, err := operator.Logical().Write("apikey/keys/"+k.KeyID, map[string]interface{}{"disabled": true})
		require.NoError(t, err)
		requireCode(t, verifier, "apikey", k.Key, codeDisabled)
		_, err = operator.Logical().Delete("apikey/keys/" + k.KeyID)
		require.NoError(t, err)
		requireCode(t, verifier, "apikey", k.Key, codeNotFound)
	})

	t.Run("root sees the same through sys/capabilities", func(t *testing.T) {
		caps := func(token, path string) []string {
			out, err := s.Client.Sys().CapabilitiesWithContext(t.Context(), token, path)
			require.NoError(t, err)
			return out
		}
		require.Equal(t, []string{"update"}, caps(verifierToken, "apikey/verify"))
		require.Equal(t, []string{"deny"}, caps(verifierToken, "apikey/creds/app"))
		require.ElementsMatch(t, []string{"read", "update"}, caps(issuerToken, "apikey/creds/app"))
		require.Equal(t, []string{"deny"}, caps(issuerToken, "apikey/verify"))
		require.Equal(t, []string{"list"}, caps(auditorToken, "apikey/keys/"))
		require.Equal(t, []string{"read"}, caps(auditorToken, "apikey/keys/"+k.KeyID))
		require.Equal(t, []string{"deny"}, caps(auditorToken, "apikey/creds/app"))
	})
}
