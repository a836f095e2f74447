//go:build integration

package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAnomalyNewNetworkDisablesTheKey: against a real Vault (the test-clock plugin), a
// key learns its network, then a thief uses it from another network while the owner is
// still using it; the anomaly shows in anomalies/ (operator and auditor policies), and
// with anomaly_action=disable the key verifies DISABLED on the next call.
func TestAnomalyNewNetworkDisablesTheKey(t *testing.T) {
	s := SetupWithClock(t)
	root := s.RootToken
	s.MustCLI(t, root, "write", "apikey/roles/watched", "scopes=read", "ttl=720h", "max_ttl=720h",
		"anomaly_learning_period=1h", "anomaly_action=disable")
	s.MustCLI(t, root, "write", "apikey/roles/logged", "scopes=read", "ttl=720h", "max_ttl=720h",
		"anomaly_learning_period=1h")
	watched := issueAPI(t, s.Client, "apikey", "watched", nil)
	logged := issueAPI(t, s.Client, "apikey", "logged", nil)
	verifier := s.NewClient(t, s.VerifierToken(t))
	s.WritePolicy(t, "operator")
	s.WritePolicy(t, "auditor")
	operator := s.NewClient(t, s.Token(t, "operator"))
	auditor := s.NewClient(t, s.Token(t, "auditor"))

	owner, thief := "198.51.100.7", "203.0.113.9"
	use := func(k issued, from string) string {
		return verifyData(t, verifier, "apikey", map[string]interface{}{"api_key": k.Key, "scopes": "read", "client_ip": from}).Code
	}
	// Learning: two hours of the owner's use from one network, a call every 10 minutes.
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for m := 0; m <= 120; m += 10 {
		s.SetClock(t, root, start.Add(time.Duration(m)*time.Minute))
		for _, k := range []issued{watched, logged} {
			require.Equal(t, codeValid, use(k, owner))
		}
	}
	// After learning: the owner keeps working, a thief joins from elsewhere.
	at := start.Add(2*time.Hour + 30*time.Second)
	for i, from := range []string{owner, thief, owner, thief, owner} {
		s.SetClock(t, root, at.Add(time.Duration(i)*20*time.Second))
		for _, k := range []issued{watched, logged} {
			use(k, from) // the watched key may be disabled part-way
		}
	}

	list, err := auditor.Logical().ReadWithData("apikey/anomalies/", map[string][]string{"list": {"true"}, "key_id": {watched.KeyID}})
	require.NoError(t, err)
	require.NotNil(t, list, "an anomaly for the watched key")
	ids := list.Data["keys"].([]interface{})
	require.NotEmpty(t, ids)
	rec, err := auditor.Logical().Read("apikey/anomalies/" + ids[0].(string))
	require.NoError(t, err)
	require.Equal(t, "new_network", rec.Data["kind"])
	require.Equal(t, "disabled", rec.Data["action"])
	require.Equal(t, "203.0.113.0/24", rec.Data["network"])
	require.NotContains(t, rec.Data["detail"], watched.Key)

	require.Equal(t, codeDisabled, use(watched, owner), "disabled at once")
	require.Equal(t, codeValid, use(logged, owner), "anomaly_action=log only records it")
	loggedList, err := auditor.Logical().ReadWithData("apikey/anomalies/", map[string][]string{"list": {"true"}, "key_id": {logged.KeyID}, "kind": {"new_network"}})
	require.NoError(t, err)
	require.NotNil(t, loggedList)

	// The operator acknowledges; the auditor cannot.
	_, err = auditor.Logical().Write("apikey/anomalies/"+ids[0].(string), map[string]interface{}{"acknowledged": true})
	require.ErrorContains(t, err, "permission denied")
	ack, err := operator.Logical().Write("apikey/anomalies/"+ids[0].(string), map[string]interface{}{"acknowledged": true, "note": "thief, key rotated"})
	require.NoError(t, err)
	require.Equal(t, true, ack.Data["acknowledged"])
	_, err = verifier.Logical().List("apikey/anomalies/")
	require.ErrorContains(t, err, "permission denied", "the verifier reads no anomalies")
}
