package keyformat

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// scannerRegexes returns the regexes of the shipped scanner rules (docs/scanners/): both
// tools use Go's RE2, so compiling them here tests them with the tools' own semantics.
func scannerRegexes(t *testing.T) map[string]*regexp.Regexp {
	t.Helper()
	toml, err := os.ReadFile("../../docs/scanners/gitleaks.toml")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^regex = '''(.*)'''$`).FindSubmatch(toml)
	require.NotNil(t, m, "gitleaks.toml has a regex line")

	raw, err := os.ReadFile("../../docs/scanners/trufflehog.yaml")
	require.NoError(t, err)
	var th struct {
		Detectors []struct {
			Name     string            `yaml:"name"`
			Keywords []string          `yaml:"keywords"`
			Regex    map[string]string `yaml:"regex"`
		} `yaml:"detectors"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &th))
	require.Len(t, th.Detectors, 1)
	require.Equal(t, []string{DefaultPrefix + "_"}, th.Detectors[0].Keywords)
	return map[string]*regexp.Regexp{
		"gitleaks":   regexp.MustCompile(string(m[1])),
		"trufflehog": regexp.MustCompile(th.Detectors[0].Regex["key"]),
	}
}

// ScannerSamples returns text holding n keys in the places keys leak to, the keys, and
// near-misses that are not keys of the default prefix.
func scannerSamples(t *testing.T, n int) (text string, keys []string) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		key, _, err := Generate(DefaultPrefix)
		require.NoError(t, err)
		keys = append(keys, key)
		switch i % 4 {
		case 0:
			b.WriteString("API_KEY=" + key + "\n")
		case 1:
			b.WriteString(`{"token": "` + key + `"}` + "\n")
		case 2:
			b.WriteString("curl -H 'Authorization: Bearer " + key + "' https://api\n")
		case 3:
			b.WriteString("https://api.example.com/?api_key=" + key + "&x=1\n")
		}
	}
	k := keys[0]
	for _, near := range []string{
		k[:len(k)-1],          // 64 characters
		k + "Z",               // 66 characters
		"xk" + k[2:],          // another prefix
		"VK" + k[2:],          // uppercase prefix
		"avk" + k[2:],         // the prefix inside a word
		k[:20] + "-" + k[21:], // a character outside base62
	} {
		b.WriteString("NEAR=" + near + "\n")
	}
	return b.String(), keys
}

func TestScannerRulesFindKeysAndOnlyKeys(t *testing.T) {
	text, keys := scannerSamples(t, 40)
	for tool, re := range scannerRegexes(t) {
		t.Run(tool, func(t *testing.T) {
			var found []string
			for _, m := range re.FindAllStringSubmatch(text, -1) {
				found = append(found, m[1])
			}
			require.Equal(t, keys, found, "every key, exactly, and no near-miss")
			for _, f := range found {
				_, err := Parse(f)
				require.NoError(t, err, "a match passes the checksum")
			}
		})
	}
}

// A placeholder passes the regex (gitleaks' entropy floor drops it; trufflehog's
// verification call does) and fails the checksum: what scanners should check.
func TestScannerPlaceholderFailsTheChecksum(t *testing.T) {
	placeholder := DefaultPrefix + "_" + strings.Repeat("x", BodyLen)
	for tool, re := range scannerRegexes(t) {
		require.True(t, re.MatchString(placeholder+"\n"), tool)
	}
	_, err := Parse(placeholder)
	require.Error(t, err)
}
