package keyformat

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGenerateParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"vk", "acme", "a1", "abcdefghij"} {
		key, id, err := Generate(prefix)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(key, prefix+"_"))
		require.Len(t, key, len(prefix)+1+BodyLen)
		require.True(t, ValidKeyID(id))

		parsed, err := Parse(key)
		require.NoError(t, err)
		require.Equal(t, Parsed{Prefix: prefix, KeyID: id}, parsed)
	}
}

func TestGenerateIsUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		key, id, err := Generate(DefaultPrefix)
		require.NoError(t, err)
		require.False(t, seen[key], "duplicate key")
		require.False(t, seen[id], "duplicate key_id")
		seen[key], seen[id] = true, true
	}
}

func TestGenerateRejectsBadPrefix(t *testing.T) {
	for _, prefix := range []string{"", "v", "VK", "1a", "a_b", "abcdefghijk", "vk-"} {
		_, _, err := Generate(prefix)
		require.ErrorIs(t, err, ErrBadPrefix, prefix)
	}
}

func TestGeneratePropagatesRandomFailure(t *testing.T) {
	_, _, err := generate(bytes.NewReader(nil), "vk")
	require.Error(t, err)
}

func TestGenerateRejectsBiasedBytes(t *testing.T) {
	// All bytes >= 248 must be skipped; a stream of them followed by zeros yields '0's.
	stream := append(bytes.Repeat([]byte{255}, 200), bytes.Repeat([]byte{0}, 200)...)
	key, _, err := generate(bytes.NewReader(stream), "vk")
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("0", KeyIDLen+SecretLen), key[3:3+KeyIDLen+SecretLen])
}

func TestParseRejects(t *testing.T) {
	valid, _, err := Generate("vk")
	require.NoError(t, err)
	flipLast := []byte(valid)
	if flipLast[len(flipLast)-1] == 'a' {
		flipLast[len(flipLast)-1] = 'b'
	} else {
		flipLast[len(flipLast)-1] = 'a'
	}
	flipBody := []byte(valid)
	if flipBody[10] == 'a' {
		flipBody[10] = 'b'
	} else {
		flipBody[10] = 'a'
	}

	cases := []struct {
		name string
		key  string
		want error
	}{
		{"empty", "", ErrBadPrefix},
		{"no separator", strings.Repeat("a", 40), ErrBadPrefix},
		{"upper prefix", "VK" + valid[2:], ErrBadPrefix},
		{"other prefix keeps checksum", "zz" + valid[2:], ErrBadChecksum},
		{"short", valid[:len(valid)-1], ErrBadLength},
		{"long", valid + "a", ErrBadLength},
		{"huge", strings.Repeat("a", 1<<20), ErrBadLength},
		{"charset", valid[:20] + "-" + valid[21:], ErrBadCharset},
		{"unicode", valid[:20] + "é" + valid[22:], ErrBadCharset},
		{"checksum", string(flipLast), ErrBadChecksum},
		{"body typo", string(flipBody), ErrBadChecksum},
		{"leading space", " " + valid[1:], ErrBadPrefix},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.key)
			require.True(t, errors.Is(err, tc.want), "got %v want %v", err, tc.want)
			if err != nil {
				require.NotContains(t, err.Error(), valid[3:])
			}
		})
	}
}

func TestValidPrefixMatchesThePattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[a-z][a-z0-9]{1,9}$`)
	for _, p := range []string{"", "a", "ab", "a1", "1a", "vk", "abcdefghij", "abcdefghijk", "aB", "a_", "a-b", "zz9", "é1", "a\x00"} {
		require.Equal(t, pattern.MatchString(p), ValidPrefix(p), "%q", p)
	}
}

func TestValidKeyID(t *testing.T) {
	require.True(t, ValidKeyID("0123456789abcdef"))
	require.False(t, ValidKeyID("0123456789abcde"))
	require.False(t, ValidKeyID("../../etc/passwd"))
	require.False(t, ValidKeyID("0123456789abcde_"))
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		if _, _, err := Generate("vk"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	key, _, _ := Generate("vk")
	for b.Loop() {
		if _, err := Parse(key); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	key, _, _ := Generate("vk")
	f.Add(key)
	f.Add("")
	f.Add("vk_")
	f.Add("vk_" + strings.Repeat("0", BodyLen))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err == nil {
			require.True(t, ValidPrefix(p.Prefix))
			require.True(t, ValidKeyID(p.KeyID))
		}
	})
}

func TestGenerateWithKeyID(t *testing.T) {
	id := KeyIDFromSeed([]byte("seed"))
	require.True(t, ValidKeyID(id))
	require.Equal(t, id, KeyIDFromSeed([]byte("seed")), "deterministic")
	require.NotEqual(t, id, KeyIDFromSeed([]byte("seed2")))

	k1, err := GenerateWithKeyID("vk", id)
	require.NoError(t, err)
	k2, err := GenerateWithKeyID("vk", id)
	require.NoError(t, err)
	require.NotEqual(t, k1, k2, "the secret part is random")
	for _, k := range []string{k1, k2} {
		p, err := Parse(k)
		require.NoError(t, err)
		require.Equal(t, id, p.KeyID)
		require.Equal(t, "vk", p.Prefix)
	}
	_, err = GenerateWithKeyID("vk", "short")
	require.Error(t, err)
	_, err = GenerateWithKeyID("V", id)
	require.ErrorIs(t, err, ErrBadPrefix)
}

// TestKeyIDFromSeedIsUniform: every base62 character appears at every position with
// about the same frequency.
func TestKeyIDFromSeedIsUniform(t *testing.T) {
	counts := map[byte]int{}
	const n = 20000
	for i := range n {
		for _, c := range []byte(KeyIDFromSeed([]byte{byte(i), byte(i >> 8), byte(i >> 16)})) {
			counts[c]++
		}
	}
	require.Len(t, counts, 62)
	want := float64(n*KeyIDLen) / 62
	for c, got := range counts {
		require.InDelta(t, want, float64(got), want*0.1, "character %q", c)
	}
}
