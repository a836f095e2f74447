package anomaly

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultsAndWithDefaults(t *testing.T) {
	d := Defaults()
	require.NoError(t, d.Validate())
	require.Equal(t, d, Config{}.WithDefaults())
	c := Config{Learning: 48 * time.Hour, RateZ: 9, Off: []Kind{RateSpike}}.WithDefaults()
	require.Equal(t, 48*time.Hour, c.Learning)
	require.Equal(t, 9.0, c.RateZ)
	require.Equal(t, d.Dormancy, c.Dormancy)
	require.Equal(t, d.RateFloor, c.RateFloor)
	require.Equal(t, d.RefusalBurst, c.RefusalBurst)
	require.Equal(t, d.NetworkFloor, c.NetworkFloor)
	require.Equal(t, []Kind{RateSpike}, c.Off)
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // the error's prefix; "" for none
	}{
		{"zero takes the defaults", Config{}, ""},
		{"every kind off", Config{Off: Kinds()}, ""},
		{"learning too short", Config{Learning: time.Minute}, "anomaly_learning_period: "},
		{"learning negative", Config{Learning: -time.Hour}, "anomaly_learning_period: "},
		{"learning too long", Config{Learning: 91 * 24 * time.Hour}, "anomaly_learning_period: "},
		{"dormancy too short", Config{Dormancy: time.Hour}, "anomaly_dormancy: "},
		{"dormancy too long", Config{Dormancy: 3651 * 24 * time.Hour}, "anomaly_dormancy: "},
		{"rate z too small", Config{RateZ: 0.5}, "anomaly_rate_z: must be between 1 and 100"},
		{"rate z too large", Config{RateZ: 101}, "anomaly_rate_z: must be between 1 and 100"},
		{"rate z negative", Config{RateZ: -3}, "anomaly_rate_z: "},
		{"rate z NaN", Config{RateZ: math.NaN()}, "anomaly_rate_z: "},
		{"rate floor too large", Config{RateFloor: 2_000_000}, "anomaly_rate_floor: "},
		{"refusal burst too large", Config{RefusalBurst: 2_000_000}, "anomaly_refusal_burst: "},
		{"network floor too small", Config{NetworkFloor: 1}, "anomaly_network_floor: "},
		{"network floor too large", Config{NetworkFloor: 201}, "anomaly_network_floor: "},
		{"unknown kind", Config{Off: []Kind{"new_networks"}}, "anomaly_off: unknown kind \"new_networks\""},
		{"kind not in canonical form", Config{Off: []Kind{"Rate_Spike"}}, "anomaly_off: "},
		{"at the limits", Config{Learning: time.Hour, Dormancy: 24 * time.Hour, RateZ: 1, RateFloor: 1,
			RefusalBurst: 1, NetworkFloor: 2}, ""},
		{"at the other limits", Config{Learning: 90 * 24 * time.Hour, Dormancy: 3650 * 24 * time.Hour, RateZ: 100,
			RateFloor: 1_000_000, RefusalBurst: 1_000_000, NetworkFloor: 200}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.Equal(t, 0, indexOf(err.Error(), tc.want), "the field's name comes first: %s", err)
		})
	}
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestParseKind(t *testing.T) {
	for _, k := range Kinds() {
		got, err := ParseKind(string(k))
		require.NoError(t, err)
		require.Equal(t, k, got)
	}
	got, err := ParseKind("  Rate_Spike ")
	require.NoError(t, err)
	require.Equal(t, RateSpike, got)
	_, err = ParseKind("spike")
	require.EqualError(t, err, `unknown anomaly kind "spike" (one of new_network, many_networks, rate_spike, refusal_storm, secret_guessing, dormant_wake)`)
	_, err = ParseKind("")
	require.Error(t, err)
}
