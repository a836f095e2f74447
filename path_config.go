package apikey

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/usagestats"
)

const (
	defaultCacheSize = 10_000
	maxCacheSize     = 10_000_000
)

// settings are the mount's tunables. The mount secret is stored apart (config/secret,
// seal-wrapped) so that reading or writing settings never touches it.
type settings struct {
	CacheSize int `json:"cache_size"`
	// TidySafetyBuffer is how long past its expiry a key record is kept before tidy
	// removes it, so that Vault's own lease revocation goes first.
	TidySafetyBuffer time.Duration `json:"tidy_safety_buffer"`
	// TidyInterval is how often the periodic tidy runs; 0 turns it off.
	TidyInterval time.Duration `json:"tidy_interval"`
	// UsageHours and UsageDays are how many hourly and daily buckets of verify outcomes
	// are kept (0: the defaults). UsageCountingOff stops counting them (the zero value
	// counts, so settings stored before counting existed count too).
	UsageHours       int  `json:"usage_hours,omitempty"`
	UsageDays        int  `json:"usage_days,omitempty"`
	UsageCountingOff bool `json:"usage_counting_off,omitempty"`
	// LeakedAction is what a leak report does to a valid key ("" = revoke).
	LeakedAction string `json:"leaked_action,omitempty"`
	// GrantTTL is how long a quota grant lasts without renewal (0 = the default).
	GrantTTL time.Duration `json:"grant_ttl,omitempty"`
}

// grantTTL is the TTL of quota grants (fleet_grants.go).
func (s *settings) grantTTL() time.Duration {
	if s.GrantTTL <= 0 {
		return defaultGrantTTL
	}
	return s.GrantTTL
}

func (s *settings) leakedAction() string {
	if s.LeakedAction == "" {
		return leakedActionRevoke
	}
	return s.LeakedAction
}

const (
	defaultTidySafetyBuffer = time.Hour
	defaultTidyInterval     = time.Hour
	minTidySafetyBuffer     = time.Minute
	// Grants last seconds: long enough that a holder renews a few times a TTL at
	// most, short enough that a lost holder's rate share comes back soon.
	defaultGrantTTL = 5 * time.Second
	minGrantTTL     = time.Second
	maxGrantTTL     = 5 * time.Minute
)

func defaultSettings() *settings {
	return &settings{CacheSize: defaultCacheSize, TidySafetyBuffer: defaultTidySafetyBuffer, TidyInterval: defaultTidyInterval}
}

func pathConfig(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"cache_size": {
				Type:        framework.TypeInt,
				Description: fmt.Sprintf("How many key records verify keeps in memory (per node). Default %d.", defaultCacheSize),
				Default:     defaultCacheSize,
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "Verify cache size",
				},
			},
			"tidy_safety_buffer": {
				Type:        framework.TypeDurationSecond,
				Description: "How long past expiry a key record is kept before tidy removes it. Default 1h.",
				Default:     int(defaultTidySafetyBuffer.Seconds()),
			},
			"tidy_interval": {
				Type:        framework.TypeDurationSecond,
				Description: "How often tidy runs by itself; 0 turns the periodic run off. Default 1h.",
				Default:     int(defaultTidyInterval.Seconds()),
			},
			"usage_hours": {
				Type:        framework.TypeInt,
				Description: fmt.Sprintf("How many hours of hourly usage buckets are kept (1-%d). Default %d.", usagestats.MaxHours, usagestats.DefaultHours),
				Default:     usagestats.DefaultHours,
			},
			"usage_days": {
				Type:        framework.TypeInt,
				Description: fmt.Sprintf("How many days of daily usage buckets are kept (1-%d). Default %d.", usagestats.MaxDays, usagestats.DefaultDays),
				Default:     usagestats.DefaultDays,
			},
			"usage_counting": {
				Type:        framework.TypeBool,
				Description: "Whether verify outcomes are counted over time (keys/<key_id>/usage, usage, metrics). Default true.",
				Default:     true,
			},
			"leaked_action": {
				Type:          framework.TypeString,
				Description:   "What a report to the leaked path does to a valid key: revoke (default: it stops verifying at once) or disable.",
				AllowedValues: []interface{}{leakedActionRevoke, leakedActionDisable},
			},
			"grant_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "How long a quota grant (verify's grant_holder) lasts unless renewed: 1s to 5m. Default 5s. Holders renew at half of it; a holder that disappears holds its rate share this long.",
				Default:     int(defaultGrantTTL.Seconds()),
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationSuffix: "configuration"},
				Responses: okResponse(map[string]*framework.FieldSchema{
					"cache_size":         {Type: framework.TypeInt, Description: "How many key records verify keeps in memory (per node)."},
					"tidy_safety_buffer": {Type: framework.TypeDurationSecond, Description: "How long past expiry a key record is kept before tidy removes it (seconds)."},
					"tidy_interval":      {Type: framework.TypeDurationSecond, Description: "How often tidy runs by itself (seconds; 0 = never)."},
					"usage_hours":        {Type: framework.TypeInt, Description: "Hours of hourly usage buckets kept."},
					"usage_days":         {Type: framework.TypeInt, Description: "Days of daily usage buckets kept."},
					"usage_counting":     {Type: framework.TypeBool, Description: "Whether verify outcomes are counted over time."},
					"leaked_action":      {Type: framework.TypeString, Description: "What a leak report does to a valid key: revoke or disable."},
					"grant_ttl":          {Type: framework.TypeDurationSecond, Description: "How long a quota grant lasts unless renewed (seconds)."},
				}),
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "configure"},
				Responses:    noContentResponse(),
			},
		},
		HelpSynopsis:    strings.TrimSpace(configHelpSyn),
		HelpDescription: strings.TrimSpace(configHelpDesc),
	}
}

// getSettings returns the stored settings or the defaults.
func (b *backend) getSettings(ctx context.Context, s logical.Storage) (*settings, error) {
	b.stateMu.RLock()
	cur := b.settings
	b.stateMu.RUnlock()
	if cur != nil {
		return cur, nil
	}
	entry, err := s.Get(ctx, configSettingsKey)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	loaded := defaultSettings()
	if entry != nil {
		if err := entry.DecodeJSON(loaded); err != nil {
			return nil, fmt.Errorf("decoding config: %w", err)
		}
	}
	b.applySettings(loaded)
	return loaded, nil
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cur, err := b.getSettings(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	ucfg := cur.usageConfig()
	return &logical.Response{Data: map[string]interface{}{
		"cache_size":         cur.CacheSize,
		"tidy_safety_buffer": int64(cur.TidySafetyBuffer.Seconds()),
		"tidy_interval":      int64(cur.TidyInterval.Seconds()),
		"usage_hours":        ucfg.Hours,
		"usage_days":         ucfg.Days,
		"usage_counting":     !cur.UsageCountingOff,
		"leaked_action":      cur.leakedAction(),
		"grant_ttl":          int64(cur.grantTTL().Seconds()),
	}}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	cur, err := b.getSettings(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	next := *cur
	if v, ok := d.GetOk("cache_size"); ok {
		next.CacheSize = v.(int)
	}
	for field, target := range map[string]*time.Duration{"tidy_safety_buffer": &next.TidySafetyBuffer, "tidy_interval": &next.TidyInterval} {
		if v, ok := d.GetOk(field); ok {
			if *target, err = durationField(field, v.(int)); err != nil {
				return logical.ErrorResponse(err.Error()), nil
			}
		}
	}
	if next.TidySafetyBuffer < minTidySafetyBuffer {
		// Expiry times are kept to the second and a lease ends a moment after its record
		// says; a buffer keeps tidy clear of leases that are still running.
		return logical.ErrorResponse("tidy_safety_buffer must be at least %s", minTidySafetyBuffer), nil
	}
	if next.CacheSize < 1 || next.CacheSize > maxCacheSize {
		return logical.ErrorResponse("cache_size must be between 1 and %d", maxCacheSize), nil
	}
	if v, ok := d.GetOk("usage_hours"); ok {
		if next.UsageHours = v.(int); next.UsageHours < 1 || next.UsageHours > usagestats.MaxHours {
			return logical.ErrorResponse("usage_hours must be between 1 and %d", usagestats.MaxHours), nil
		}
	}
	if v, ok := d.GetOk("usage_days"); ok {
		if next.UsageDays = v.(int); next.UsageDays < 1 || next.UsageDays > usagestats.MaxDays {
			return logical.ErrorResponse("usage_days must be between 1 and %d", usagestats.MaxDays), nil
		}
	}
	if v, ok := d.GetOk("usage_counting"); ok {
		next.UsageCountingOff = !v.(bool)
	}
	if v, ok := d.GetOk("grant_ttl"); ok {
		// Range-checked as seconds first: a huge value must not overflow a Duration.
		if secs := v.(int); secs < int(minGrantTTL.Seconds()) || secs > int(maxGrantTTL.Seconds()) {
			return logical.ErrorResponse("grant_ttl must be between %s and %s", minGrantTTL, maxGrantTTL), nil
		}
		next.GrantTTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("leaked_action"); ok {
		if next.LeakedAction = v.(string); next.LeakedAction != leakedActionRevoke && next.LeakedAction != leakedActionDisable {
			return logical.ErrorResponse("leaked_action must be %s or %s", leakedActionRevoke, leakedActionDisable), nil
		}
	}

	entry, err := logical.StorageEntryJSON(configSettingsKey, &next)
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, fmt.Errorf("storing config: %w", err)
	}
	b.applySettings(&next)
	return nil, nil
}

// applySettings makes cur the settings in force on this node.
func (b *backend) applySettings(cur *settings) {
	b.stateMu.Lock()
	b.settings = cur
	b.stateMu.Unlock()
	b.keyCache.Resize(cur.CacheSize)
	b.countingOff.Store(cur.UsageCountingOff)
}

const configHelpSyn = `Configure the apikey secrets engine.`

const configHelpDesc = `
Settings of this mount. cache_size bounds how many key records verify keeps in memory on
each node. tidy_safety_buffer is how long past expiry a key record stays before tidy
removes it; tidy_interval is how often tidy runs by itself (0 = never). usage_hours and usage_days
are how long hourly and daily counts of verify outcomes are kept (default 48 hours and
90 days; see keys/<key_id>/usage and usage); usage_counting=false stops counting them.
grant_ttl (1s-5m, default 5s) is how long a quota grant lasts unless its holder renews it
(see verify's grant_holder and grants/renew).
The mount's HMAC secret is generated on first use, stored apart (barrier-encrypted;
seal-wrapped too on Vault Enterprise), and never returned by this or any other path.
`
