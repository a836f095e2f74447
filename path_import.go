package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/keyformat"
)

// Import of keys people already hold (docs/import.md): into a role, as leases, found by
// verify through the index of imported_index.go.
const (
	importPath = "import"

	// maxImportBatch bounds the keys of one batch; maxImportBatchBytes bounds the batch
	// as a whole (its strings, as HandleRequest counts them). The batch is exempt from
	// the per-field bound (allowsLargeField) because of these.
	maxImportBatch      = 1000
	maxImportBatchBytes = 1 << 20

	// Plaintext keys: minImportKeyLen..maxImportedKeyLen printable ASCII characters
	// without space, and at least minImportKeyBits by importKeyBits.
	minImportKeyLen  = 16
	minImportKeyBits = 64

	// maxImportFailuresShown bounds the failures a refusal of a whole batch spells out.
	maxImportFailuresShown = 5
)

func pathImport(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: importPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "import",
			OperationSuffix: "keys",
		},
		Fields: map[string]*framework.FieldSchema{
			"role": {
				Type:        framework.TypeString,
				Description: "Role the keys join (lowercase): they get its scopes, restrictions, metadata and TTLs, like keys it issues.",
				Required:    true,
			},
			"key": {
				Type: framework.TypeString,
				Description: fmt.Sprintf("A key to import, in plaintext: %d-%d printable ASCII characters without spaces, not too easy to guess "+
					"(an estimate of at least %d bits, see docs/import.md). Only its HMAC is stored; it is never returned.", minImportKeyLen, maxImportedKeyLen, minImportKeyBits),
			},
			"sha256": {
				Type:        framework.TypeString,
				Description: "Instead of key: the SHA-256 of a key (64 hex characters, or 44 base64), from a system that kept only hashes. Stored as an HMAC of it and flagged hash_origin=sha256 (weaker: its strength was never checked).",
			},
			"name": {
				Type:        framework.TypeString,
				Description: "A label for the key.",
			},
			"metadata": {
				Type:        framework.TypeKVPairs,
				Description: "Key/value pairs added to the role's metadata (the role's pairs cannot be changed).",
			},
			"identity": {
				Type:        framework.TypeString,
				Description: "Who the key belongs to (1-128 of A-Z a-z 0-9 . _ @ : -), where the role has allow_identity=true. Default: none (not the importing token's entity).",
			},
			"ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Lease TTL of the key (of every key of a batch), capped by the role's max_ttl. Default: the role's ttl.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "TTL",
				},
			},
			"keys": {
				Type: framework.TypeSlice,
				Description: fmt.Sprintf("A batch instead of key or sha256: a list of at most %d objects, each with key or sha256 and optionally name, metadata (an object of strings) and identity. "+
					"One lease covers the keys imported; each key refused is reported with its index and why.", maxImportBatch),
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathImportKeys, Responses: okResponse(importResponseFields)},
		},
		HelpSynopsis:    strings.TrimSpace(importHelpSyn),
		HelpDescription: strings.TrimSpace(importHelpDesc),
	}
}

// importResponseFields documents both answers: one key (as creds/<role>, without the
// key) and a batch.
var importResponseFields = withFields(keyPublicFields, map[string]*framework.FieldSchema{
	"ttl":            nil,
	"hash_origin":    {Type: framework.TypeString, Description: "plaintext, or sha256 for a key imported from its hash (weaker)."},
	"imported":       {Type: framework.TypeSlice, Description: "Batch: the keys imported, each with index, key_id, name, identity and hash_origin."},
	"failed":         {Type: framework.TypeSlice, Description: "Batch: the keys refused, each with index and error (naming the field)."},
	"imported_count": {Type: framework.TypeInt, Description: "Batch: how many keys were imported."},
	"failed_count":   {Type: framework.TypeInt, Description: "Batch: how many keys were refused."},
})

// allowsLargeField reports whether HandleRequest should leave field of a request to path
// out of its per-field size bound because the path bounds it itself: a batch of 1000
// keys is larger than 16 KiB, and so are 10 000 key_ids to revoke.
func allowsLargeField(path, field string) bool {
	switch {
	case path == importPath && field == "keys":
		return true
	case path == bulkRevokePath && field == "key_ids":
		return true
	}
	return false
}

// importItem is one key to import, checked and hashed: the plaintext is dropped once
// the hashes are computed.
type importItem struct {
	// index is the key's position in the batch (0 for a single key); prefix is how
	// messages name its fields ("" or "keys[3]."), field the one that carried the key.
	index  int
	prefix string
	field  string
	origin string
	// indexName names its index entry; hash is what its record holds.
	indexName string
	hash      []byte
	// engineKeyID is set for a key in this engine's own format: it keeps its key_id.
	engineKeyID   string
	name          string
	identity      string
	issueMetadata map[string]string
	metadata      map[string]string

	keyID  string
	issued *issuedKey
}

// importFailure is a key of a batch that was refused; nothing of it was written.
type importFailure struct {
	index int
	err   string
}

func (b *backend) pathImportKeys(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	roleName, errResp := roleNameFrom(d, "role")
	if errResp != nil {
		return errResp, nil
	}
	if roleName == "" {
		return logical.ErrorResponse("role: is required"), nil
	}
	r, err := b.getRole(ctx, req.Storage, roleName)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return logical.ErrorResponse("role: role %q does not exist", roleName), nil
	}
	ttl := r.TTL
	if v, ok := d.GetOk("ttl"); ok {
		if ttl, err = durationField("ttl", v.(int)); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}

	rawBatch, batch := d.GetOk("keys")
	if batch {
		if err := singleFieldsWithBatch(d); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
		list, _ := rawBatch.([]interface{})
		switch {
		case len(list) == 0:
			return logical.ErrorResponse("keys: at least one key is required"), nil
		case len(list) > maxImportBatch:
			return logical.ErrorResponse("keys: at most %d keys per request (%d given)", maxImportBatch, len(list)), nil
		}
		budget := maxImportBatchBytes
		if !fitsIn(rawBatch, &budget) {
			return logical.ErrorResponse("keys: at most %d bytes per request", maxImportBatchBytes), nil
		}
	}

	// The secret comes first: the hashes are computed as each key is parsed, so the
	// plaintext lives no longer than that.
	secret, err := b.ensureMountSecret(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	var items []*importItem
	var failures []importFailure
	if batch {
		seen := make(map[string]int, len(rawBatch.([]interface{})))
		for i, raw := range rawBatch.([]interface{}) {
			item, err := parseImportObject(secret, r, i, raw)
			if err == nil {
				err = item.notRepeated(seen)
			}
			if err != nil {
				failures = append(failures, importFailure{index: i, err: err.Error()})
				continue
			}
			items = append(items, item)
		}
	} else {
		item, err := parseImportFields(secret, r, d)
		if err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
		items = append(items, item)
	}

	st := b.importedState()
	st.writeMu.Lock()
	defer st.writeMu.Unlock()

	marker := importRequestMarker(secret, req.ID)
	var ready []*importItem
	for _, item := range items {
		reason, err := b.importConflict(ctx, req.Storage, item, secret, req.ID, marker)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			if !batch {
				return logical.ErrorResponse(reason), nil
			}
			failures = append(failures, importFailure{index: item.index, err: reason})
			continue
		}
		issue := issueRequest{roleName: roleName, role: r, scopes: r.Scopes, ttl: ttl, name: item.name, metadata: item.metadata, issueMetadata: item.issueMetadata, identity: item.identity}
		ik, errResp, err := b.newIssuedKey(ctx, req, issue)
		if errResp != nil || err != nil {
			// ttl is the only input newIssuedKey refuses, and it is the whole request's.
			return errResp, err
		}
		ik.key = "" // a throwaway: the key imported is the one the client holds
		ik.record.KeyID = item.keyID
		ik.record.Hash = item.hash
		item.issued = ik
		ready = append(ready, item)
	}
	sort.Slice(failures, func(i, j int) bool { return failures[i].index < failures[j].index })
	if len(ready) == 0 {
		return logical.ErrorResponse(refusedBatchMessage(failures)), nil
	}

	if err := st.markImported(ctx, req.Storage); err != nil {
		return nil, err
	}
	for n, item := range ready {
		if err := b.writeImportedKey(ctx, req.Storage, item, marker); err != nil {
			// Nothing half-written: the keys of this request written so far go too.
			b.unwriteImportedKeys(ctx, req.Storage, ready[:n+1])
			return nil, err
		}
	}
	for _, item := range ready {
		b.counters.issued(roleName)
		b.Logger().Debug("key imported", "key_id", item.keyID, "role", roleName, "hash_origin", item.origin)
	}
	b.Logger().Info("keys imported", "role", roleName, "imported", len(ready), "refused", len(failures))

	if !batch {
		item := ready[0]
		resp := b.leaseResponse(item.issued)
		delete(resp.Data, "api_key")
		resp.Data["hash_origin"] = item.origin
		addSHA256Warning(resp, ready)
		return resp, nil
	}
	return b.importBatchResponse(roleName, r, ready, failures), nil
}

// singleFieldsWithBatch refuses the one-key fields next to keys.
func singleFieldsWithBatch(d *framework.FieldData) error {
	for _, field := range []string{"key", "sha256", "name", "metadata", "identity"} {
		if _, ok := d.GetOk(field); ok {
			return fmt.Errorf("%s: give it inside each object of keys, not next to keys", field)
		}
	}
	return nil
}

// notRepeated refuses a key that an earlier object of the batch holds, or a key of this
// engine's format whose key_id an earlier one has; seen remembers the batch's keys.
func (item *importItem) notRepeated(seen map[string]int) error {
	names := []string{"index:" + item.indexName}
	if item.engineKeyID != "" {
		names = append(names, "key_id:"+item.engineKeyID)
	}
	for _, name := range names {
		if first, dup := seen[name]; dup {
			return fmt.Errorf("%s%s: the same key as keys[%d]", item.prefix, item.field, first)
		}
	}
	for _, name := range names {
		seen[name] = item.index
	}
	return nil
}

// parseImportFields reads a single key from the request's fields.
func parseImportFields(secret []byte, r *role, d *framework.FieldData) (*importItem, error) {
	key, _ := d.GetOk("key")
	sum, _ := d.GetOk("sha256")
	item := &importItem{}
	if err := item.setKey(secret, stringOrEmpty(key), stringOrEmpty(sum)); err != nil {
		return nil, err
	}
	if v, ok := d.GetOk("name"); ok {
		item.name = v.(string)
	}
	if v, ok := d.GetOk("identity"); ok {
		item.identity = v.(string)
		if item.identity == "" {
			return nil, errors.New("identity: must not be empty")
		}
	}
	var requested map[string]string
	if v, ok := d.GetOk("metadata"); ok {
		requested = v.(map[string]string)
	}
	if err := item.setLabels(r, requested); err != nil {
		return nil, err
	}
	return item, nil
}

// parseImportObject reads the index'th object of a batch.
func parseImportObject(secret []byte, r *role, index int, raw interface{}) (*importItem, error) {
	item := &importItem{index: index, prefix: fmt.Sprintf("keys[%d].", index)}
	obj, ok := raw.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("keys[%d]: must be an object with key or sha256", index)
	}
	fields := make([]string, 0, len(obj))
	for field := range obj {
		fields = append(fields, field)
	}
	sort.Strings(fields)
	for _, field := range fields {
		switch field {
		case "key", "sha256", "name", "metadata", "identity":
		case "ttl":
			return nil, fmt.Errorf("%sttl: the ttl is the whole batch's: give it next to keys", item.prefix)
		default:
			return nil, fmt.Errorf("%s: unknown field (an object has key or sha256, name, metadata and identity)", item.prefix+echoName(field))
		}
	}
	var text [4]string
	for i, field := range []string{"key", "sha256", "name", "identity"} {
		v, ok := obj[field]
		if !ok || v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s%s: must be a string", item.prefix, field)
		}
		text[i] = s
	}
	if err := item.setKey(secret, text[0], text[1]); err != nil {
		return nil, err
	}
	item.name, item.identity = text[2], text[3]
	var requested map[string]string
	if v, ok := obj["metadata"]; ok && v != nil {
		m, ok := v.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("%smetadata: must be an object of strings", item.prefix)
		}
		requested = make(map[string]string, len(m))
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%smetadata: value of %s must be a string", item.prefix, echoName(k))
			}
			requested[k] = s
		}
	}
	if err := item.setLabels(r, requested); err != nil {
		return nil, err
	}
	return item, nil
}

// echoName returns a field or metadata name for a message when it cannot be a key (keys
// are at least minImportKeyLen long), else a placeholder: a key put where a name goes
// must not come back in an answer.
func echoName(name string) string {
	if len(name) >= minImportKeyLen || validatePrintable("", name) != nil {
		return "(a long name)"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return fmt.Sprintf("%q", name)
		}
	}
	return name
}

func stringOrEmpty(v interface{}) string {
	s, _ := v.(string)
	return s
}

// setKey checks the key (plaintext) or its digest (sha256) and computes the hashes; an
// empty string counts as absent, so that a CSV export's empty column needs no filter.
// Line ends are dropped (key=@file reads a file that usually ends with one); no key
// can hold them.
func (item *importItem) setKey(secret []byte, key, sum string) error {
	key, sum = strings.TrimRight(key, "\r\n"), strings.TrimRight(sum, "\r\n")
	switch {
	case key != "" && sum != "":
		return fmt.Errorf("%skey: give key or sha256, not both", item.prefix)
	case key == "" && sum == "":
		if item.prefix == "" {
			return errors.New("key: give key (plaintext) or sha256, or keys for a batch")
		}
		return fmt.Errorf("%skey: give key (plaintext) or sha256", item.prefix)
	case sum != "":
		item.field, item.origin = "sha256", hashOriginSHA256
		digest, err := parseSHA256(sum)
		if err != nil {
			return fmt.Errorf("%ssha256: %w", item.prefix, err)
		}
		item.indexName = importedDigestIndex(secret, digest)
		item.hash = importedDigestHash(secret, digest)
		return nil
	}
	item.field, item.origin = "key", hashOriginPlaintext
	if err := validateImportKey(key); err != nil {
		return fmt.Errorf("%skey: %w", item.prefix, err)
	}
	digest := sha256.Sum256([]byte(key))
	item.indexName = importedDigestIndex(secret, digest)
	if parsed, err := keyformat.Parse(key); err == nil {
		// A key of this engine's format (from another mount): verify finds it by its
		// key_id, so it keeps that and the usual hash.
		item.engineKeyID = parsed.KeyID
		item.hash = keyHash(secret, key)
		return nil
	}
	item.hash = importedDigestHash(secret, digest)
	return nil
}

// setLabels checks name and identity and merges metadata with the role's, as
// creds/<role> does.
func (item *importItem) setLabels(r *role, requested map[string]string) error {
	if err := validateLabel(item.prefix+"name", item.name); err != nil {
		return err
	}
	if item.identity != "" {
		if !r.Limits.AllowIdentity {
			return fmt.Errorf("%sidentity: the role does not let keys be given an identity (allow_identity is false)", item.prefix)
		}
		if err := validateIdentity(item.prefix+"identity", item.identity); err != nil {
			return err
		}
	}
	item.metadata = r.Metadata
	if requested != nil {
		merged, err := mergeMetadata(r.Metadata, requested)
		if err != nil {
			return fmt.Errorf("%smetadata: %w", item.prefix, err)
		}
		item.issueMetadata, item.metadata = requested, merged
	}
	return nil
}

// parseSHA256 accepts a SHA-256 digest as 64 hex characters or as standard base64 (as
// Unkey's exports give it).
func parseSHA256(s string) ([sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	var raw []byte
	var err error
	switch len(s) {
	case hex.EncodedLen(sha256.Size):
		raw, err = hex.DecodeString(s)
	case base64.StdEncoding.EncodedLen(sha256.Size):
		raw, err = base64.StdEncoding.DecodeString(s)
	default:
		err = errors.New("wrong length")
	}
	if err != nil || len(raw) != sha256.Size {
		return digest, errors.New("must be a SHA-256 digest: 64 hex characters or 44 base64")
	}
	copy(digest[:], raw)
	if digest == sha256.Sum256(nil) {
		return digest, errors.New("is the SHA-256 of an empty string: the export lost the key")
	}
	return digest, nil
}

// validateImportKey applies the rule for plaintext keys; its errors never contain the key.
func validateImportKey(key string) error {
	if len(key) < minImportKeyLen || len(key) > maxImportedKeyLen {
		return fmt.Errorf("must be %d to %d characters", minImportKeyLen, maxImportedKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	if bits := importKeyBits(key); bits < minImportKeyBits {
		return fmt.Errorf("too easy to guess (about %d bits by the import rule, at least %d needed; see docs/import.md)", int(bits), minImportKeyBits)
	}
	return nil
}

// commonKeyWords are the words and keyboard runs most found in weak secrets, lowercase.
var commonKeyWords = []string{
	"password", "passw0rd", "p@ssw0rd", "secret", "admin", "qwerty", "azerty", "asdf", "zxcv",
	"qazwsx", "1qaz", "2wsx", "letmein", "welcome", "changeme", "default", "apikey", "api_key",
	"api-key", "token", "test", "example", "sample", "master", "monkey", "dragon", "login",
	"iloveyou", "sunshine", "princess", "football", "baseball", "trustno1", "hello", "root",
	"guest", "user", "demo", "access", "shadow", "superman", "batman", "abc123", "temp",
	"pass", "key",
}

// The costs importKeyBits gives what guessers try first.
const (
	commonWordBits = 8 // one of the commonKeyWords, any case
	repeatBits     = 8 // a repeat of 3+ characters seen earlier (where and how long)
	runBits        = 1 // a character that continues a run: aaaa, abcd, 9876
	// minRepeat is the shortest repeat that costs repeatBits: shorter ones are common
	// in random keys of few characters (digits, hex).
	minRepeat = 4
)

// importKeyBits estimates how many bits a guesser needs, in the spirit of zxcvbn but
// small: each character costs log2 of the size of the character classes the key uses
// (26 lowercase, 26 uppercase, 10 digits, 32 symbols), except that a common word costs
// commonWordBits, a repeat of 4 or more characters seen earlier repeatBits, and a
// character continuing a run (the same step of -1, 0 or +1 as the three before it)
// runBits. Random keys of 16 base62 characters score about 95 (the lowest of 200 000:
// 76), of 24 hex characters about 120 (77), of 24 digits about 80 (64.4);
// "aaaaaaaaaaaaaaaa" scores 12 and "passwordpassword" 16. Linear in the key's length: repeats are found
// through the last few places each 3-character string was seen.
func importKeyBits(key string) float64 {
	var lower, upper, digit, symbol bool
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case '0' <= c && c <= '9':
			digit = true
		default:
			symbol = true
		}
	}
	pool := 0
	for _, class := range []struct {
		used bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {symbol, 32}} {
		if class.used {
			pool += class.size
		}
	}
	perChar := math.Log2(float64(max(pool, 2)))
	folded := strings.ToLower(key)

	const maxPlaces = 8
	seen := make(map[string][]int, len(key))
	bits := 0.0
	for i := 0; i < len(key); {
		step, cost := 1, perChar
		if w := commonWordAt(folded, i); w > 0 {
			step, cost = w, commonWordBits
		} else if l := longestRepeat(key, i, seen[key[i:min(i+3, len(key))]]); l >= minRepeat {
			step, cost = l, repeatBits
		} else if i >= 3 && continuesRun(key[i-3:i+1]) {
			cost = runBits
		}
		for j := i; j < i+step && j+3 <= len(key); j++ {
			places := append(seen[key[j:j+3]], j)
			if len(places) > maxPlaces {
				places = places[1:]
			}
			seen[key[j:j+3]] = places
		}
		bits += cost
		i += step
	}
	return bits
}

// commonWordAt returns the length of the longest common word at folded[i:], or 0.
func commonWordAt(folded string, i int) int {
	best := 0
	for _, w := range commonKeyWords {
		if len(w) > best && strings.HasPrefix(folded[i:], w) {
			best = len(w)
		}
	}
	return best
}

// longestRepeat returns how many characters from key[i] repeat those from one of the
// earlier places (which start the same 3 characters), or 0.
func longestRepeat(key string, i int, places []int) int {
	best := 0
	for _, j := range places {
		n := 0
		for i+n < len(key) && key[j+n] == key[i+n] {
			n++
		}
		best = max(best, n)
	}
	return best
}

// continuesRun reports whether the four characters of s step by the same -1, 0 or +1.
func continuesRun(s string) bool {
	step := int(s[1]) - int(s[0])
	return step >= -1 && step <= 1 && int(s[2])-int(s[1]) == step && int(s[3])-int(s[2]) == step
}

// importRequestMarker names the request that imports a key (importedKeyRef.Request).
func importRequestMarker(secret []byte, requestID string) string {
	if requestID == "" {
		return ""
	}
	return hex.EncodeToString(keyHash(secret, "import-request\x00"+requestID))[:32]
}

// importKeyID is the key_id of a key imported from another format: derived from Vault's
// request id (as creds/<role> derives its key_ids) so that a replayed request writes the
// same records again, else random.
func importKeyID(secret []byte, requestID string, index int) (string, error) {
	if requestID == "" {
		seed := make([]byte, 32)
		if _, err := rand.Read(seed); err != nil {
			return "", fmt.Errorf("generating key_id: %w", err)
		}
		return keyformat.KeyIDFromSeed(seed), nil
	}
	return keyformat.KeyIDFromSeed(keyHash(secret, fmt.Sprintf("import-key-id\x00%s\x00%d", requestID, index))), nil
}

// importConflict sets item.keyID and returns why the key cannot be imported ("" when it
// can): it is already here. A key imported by this same request before (Vault replaying
// it) is not a conflict: its records are written again. Callers hold writeMu.
func (b *backend) importConflict(ctx context.Context, s logical.Storage, item *importItem, secret []byte, requestID, marker string) (string, error) {
	item.keyID = item.engineKeyID
	if item.keyID == "" {
		id, err := importKeyID(secret, requestID, item.index)
		if err != nil {
			return "", err
		}
		item.keyID = id
	}
	e, err := readImportedIndex(ctx, s, item.indexName)
	if err != nil {
		return "", err
	}
	if e != nil && e.KeyID != item.keyID {
		k, err := s.Get(ctx, keyPrefix+e.KeyID)
		if err != nil {
			return "", fmt.Errorf("reading key record: %w", err)
		}
		if k != nil {
			return fmt.Sprintf("%s%s: already imported (key_id %s)", item.prefix, item.field, e.KeyID), nil
		}
		// The entry outlived its key (revoked before entries were dropped): reused.
	}
	k, err := s.Get(ctx, keyPrefix+item.keyID)
	if err != nil {
		return "", fmt.Errorf("reading key record: %w", err)
	}
	if k != nil {
		ref, err := readImportedRef(ctx, s, item.keyID)
		if err != nil {
			return "", err
		}
		if ref == nil || marker == "" || ref.Request != marker {
			return fmt.Sprintf("%s%s: a key with key_id %s already exists in this mount", item.prefix, item.field, item.keyID), nil
		}
	}
	return "", nil
}

// writeImportedKey writes the key's entries, then its record. Callers hold writeMu.
func (b *backend) writeImportedKey(ctx context.Context, s logical.Storage, item *importItem, marker string) error {
	st := b.importedState()
	ref, err := logical.StorageEntryJSON(importedRefPrefix+item.keyID, importedKeyRef{Index: item.indexName, HashOrigin: item.origin, Request: marker})
	if err != nil {
		return err
	}
	if err := s.Put(ctx, ref); err != nil {
		return fmt.Errorf("storing imported key %s: %w", item.keyID, err)
	}
	entry, err := logical.StorageEntryJSON(importedPrefix+item.indexName, importedIndexEntry{KeyID: item.keyID, HashOrigin: item.origin})
	if err != nil {
		return err
	}
	st.forget(item.indexName)
	err = s.Put(ctx, entry)
	st.forget(item.indexName)
	if err != nil {
		return fmt.Errorf("storing the imported keys index: %w", err)
	}
	return b.putNewKeyEntry(ctx, s, item.issued.record)
}

// unwriteImportedKeys removes what writeImportedKey wrote for items, as far as storage
// lets it; what it cannot remove is harmless (an entry without its record answers
// NOT_FOUND and is reused by the next import) and tidy removes it.
// The records are new (no lease, nobody else writes them), so no key lock is taken:
// that would be against the lock order (key lock, then writeMu).
func (b *backend) unwriteImportedKeys(ctx context.Context, s logical.Storage, items []*importItem) {
	st := b.importedState()
	for _, item := range items {
		st.forget(item.indexName)
		err := errors.Join(
			b.deleteKeyEntry(ctx, s, item.keyID),
			s.Delete(ctx, importedPrefix+item.indexName),
			s.Delete(ctx, importedRefPrefix+item.keyID),
		)
		st.forget(item.indexName)
		if err != nil {
			b.Logger().Warn("could not undo a failed import", "key_id", item.keyID, "error", err)
		}
	}
}

// importBatchResponse is the batch's one lease: its InternalData lists every key_id, so
// that renewing or revoking it renews or revokes them all.
func (b *backend) importBatchResponse(roleName string, r *role, ready []*importItem, failures []importFailure) *logical.Response {
	ids := make([]string, 0, len(ready))
	imported := make([]map[string]interface{}, 0, len(ready))
	for _, item := range ready {
		ids = append(ids, item.keyID)
		one := map[string]interface{}{
			"index":       item.index,
			"key_id":      item.keyID,
			"name":        item.name,
			"hash_origin": item.origin,
		}
		if item.identity != "" {
			one["identity"] = item.identity
		}
		imported = append(imported, one)
	}
	failed := make([]map[string]interface{}, 0, len(failures))
	for _, f := range failures {
		failed = append(failed, map[string]interface{}{"index": f.index, "error": f.err})
	}
	first := ready[0].issued
	resp := b.Secret(secretTypeAPIKey).Response(map[string]interface{}{
		"role":           roleName,
		"scopes":         nonNilStrings(first.record.Scopes),
		"expires_at":     first.record.ExpiresAt.Format(time.RFC3339),
		"imported":       imported,
		"failed":         failed,
		"imported_count": len(imported),
		"failed_count":   len(failed),
	}, map[string]interface{}{
		importBatchKeyIDsField: ids,
		"role":                 roleName,
	})
	resp.Secret.TTL = first.ttl
	resp.Secret.MaxTTL = r.MaxTTL
	for _, w := range first.warnings {
		resp.AddWarning(w)
	}
	if len(failures) > 0 {
		resp.AddWarning(fmt.Sprintf("%d of %d keys were not imported: see failed", len(failures), len(failures)+len(ready)))
	}
	addSHA256Warning(resp, ready)
	return resp
}

func addSHA256Warning(resp *logical.Response, items []*importItem) {
	n := 0
	for _, item := range items {
		if item.origin == hashOriginSHA256 {
			n++
		}
	}
	if n > 0 {
		resp.AddWarning(fmt.Sprintf("%d key(s) imported from SHA-256 hashes (hash_origin=sha256): their strength was never checked; rotate them when clients can", n))
	}
}

// refusedBatchMessage is the 400 of a request that imported nothing.
func refusedBatchMessage(failures []importFailure) string {
	reasons := make([]string, 0, maxImportFailuresShown)
	for _, f := range failures[:min(len(failures), maxImportFailuresShown)] {
		reasons = append(reasons, f.err)
	}
	msg := "keys: no key was imported: " + strings.Join(reasons, "; ")
	if len(failures) > maxImportFailuresShown {
		msg += fmt.Sprintf("; and %d more", len(failures)-maxImportFailuresShown)
	}
	return msg
}

// importBatchKeyIDsField names the key_ids in a batch lease's InternalData.
const importBatchKeyIDsField = "key_ids"

// importBatchKeyIDs returns the key_ids of a batch import's lease, and whether the lease
// is one (a lease of one key has key_id instead).
func importBatchKeyIDs(req *logical.Request) ([]string, bool) {
	if req.Secret == nil {
		return nil, false
	}
	raw, ok := req.Secret.InternalData[importBatchKeyIDsField]
	if !ok {
		return nil, false
	}
	var ids []string
	switch v := raw.(type) {
	case []string:
		ids = v
	case []interface{}: // as Vault hands stored InternalData back
		for _, x := range v {
			if id, ok := x.(string); ok {
				ids = append(ids, id)
			}
		}
	}
	return slicesFilterKeyIDs(ids), true
}

func slicesFilterKeyIDs(ids []string) []string {
	out := ids[:0:0]
	for _, id := range ids {
		if keyformat.ValidKeyID(id) {
			out = append(out, id)
		}
	}
	return out
}

// revokeImportBatch revokes every key of a batch lease. Like the revocation of one key
// it is idempotent, and a storage failure is a plain error so that Vault retries.
func (b *backend) revokeImportBatch(ctx context.Context, req *logical.Request, ids []string) (*logical.Response, error) {
	role, _ := req.Secret.InternalData["role"].(string)
	for _, id := range ids {
		if err := b.revokeOneImported(ctx, req.Storage, id); err != nil {
			return nil, err
		}
		b.counters.revoked(role)
	}
	return nil, nil
}

func (b *backend) revokeOneImported(ctx context.Context, s logical.Storage, keyID string) error {
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()
	return b.deleteImportedKey(ctx, s, keyID)
}

// renewImportBatch renews every key of a batch lease that still exists (keys revoked
// since, one by one or in bulk, are skipped).
func (b *backend) renewImportBatch(ctx context.Context, req *logical.Request, ids []string) (*logical.Response, error) {
	var ttl, maxTTL time.Duration
	var warnings []string
	live := 0
	for _, id := range ids {
		keyTTL, keyMaxTTL, keyWarnings, found, errResp, err := b.renewOneImported(ctx, req, id)
		if errResp != nil || err != nil {
			return errResp, err
		}
		if !found {
			continue
		}
		if live == 0 || keyTTL < ttl {
			ttl = keyTTL
		}
		maxTTL = max(maxTTL, keyMaxTTL)
		warnings = append(warnings, keyWarnings...)
		live++
	}
	if live == 0 {
		return logical.ErrorResponse("the keys of this import no longer exist"), nil
	}
	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = maxTTL
	for _, w := range dedupe(warnings) {
		resp.AddWarning(w)
	}
	return resp, nil
}

func (b *backend) renewOneImported(ctx context.Context, req *logical.Request, keyID string) (ttl, maxTTL time.Duration, warnings []string, found bool, errResp *logical.Response, err error) {
	lock := b.keyLock(keyID)
	lock.Lock()
	defer lock.Unlock()
	k, err := b.storageKeyEntry(ctx, req.Storage, keyID)
	if err != nil || k == nil {
		return 0, 0, nil, false, nil, err
	}
	ttl, warnings, err = framework.CalculateTTL(b.System(), req.Secret.Increment, k.TTL, 0, k.MaxTTL, 0, req.Secret.IssueTime)
	if err != nil {
		return 0, 0, nil, false, logical.ErrorResponse(err.Error()), nil
	}
	if !k.InvalidAfter.IsZero() {
		// Rotated out: it stops at the end of its grace whatever the lease does.
		return ttl, k.MaxTTL, append(warnings, "key "+keyID+" was rotated; it stops verifying at "+k.InvalidAfter.UTC().Format(time.RFC3339)), true, nil, nil
	}
	next := *k
	next.ExpiresAt = time.Now().UTC().Add(ttl).Truncate(time.Second)
	if err := b.putKeyEntry(ctx, req.Storage, &next); err != nil {
		return 0, 0, nil, false, nil, err
	}
	return ttl, k.MaxTTL, warnings, true, nil, nil
}

func dedupe(list []string) []string {
	seen := make(map[string]bool, len(list))
	out := list[:0:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

const importHelpSyn = `Import keys people already hold into a role, as leases.`

const importHelpDesc = `
Brings existing keys into a role without making clients rotate. Give role and either key
(the plaintext: 16-512 printable ASCII characters without spaces, not too easy to guess)
or sha256 (the SHA-256 of the key, 64 hex characters or 44 base64, for keys whose source
kept only hashes: flagged hash_origin=sha256, weaker), optionally name, metadata, ttl
and identity (where the role has allow_identity=true; default none).
Only an HMAC under the mount secret is stored; the key is never returned. The answer is a
lease like creds/<role>'s, with key_id and without the key.

A batch: keys, a list of at most 1000 objects {key or sha256, name, metadata,
identity}, with role
and ttl next to it. One lease covers every key imported (renew or revoke it to renew or
revoke them all); each key refused is listed in failed with its index and the reason,
naming the field, and nothing of it is written. A key already in the mount is refused.

Verify finds imported keys through a separate HMAC index; keys of this engine's own
format (from another mount) keep their key_id. See docs/import.md.
`
