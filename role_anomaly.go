package apikey

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-apikey/vault-plugin-secrets-apikey/internal/anomaly"
)

// What a role does when one of its keys shows an anomaly.
const (
	anomalyActionLog     = "log"
	anomalyActionDisable = "disable"
)

// roleAnomaly is a role's anomaly detection settings as stored; zero values mean the
// detector's defaults (anomaly.Defaults), so roles stored before detection existed get
// them too.
type roleAnomaly struct {
	Action       string        `json:"action,omitempty"`
	Learning     time.Duration `json:"learning_period,omitempty"`
	Dormancy     time.Duration `json:"dormancy,omitempty"`
	RateZ        float64       `json:"rate_z,omitempty"`
	RateFloor    uint32        `json:"rate_floor,omitempty"`
	RefusalBurst uint32        `json:"refusal_burst,omitempty"`
	NetworkFloor uint32        `json:"network_floor,omitempty"`
	Off          []string      `json:"off,omitempty"`
}

var anomalyRoleFields = map[string]*framework.FieldSchema{
	"anomaly_action": {
		Type:          framework.TypeString,
		Description:   "What an anomaly of one of the role's keys does: log (default: recorded under anomalies/, logged, counted) or disable (also disables the key at once). Applies to keys already issued.",
		AllowedValues: []interface{}{anomalyActionLog, anomalyActionDisable},
	},
	"anomaly_learning_period": {
		Type:        framework.TypeDurationSecond,
		Description: "How long a key is watched before new networks, network counts and rate spikes raise anomalies. 0: the default.",
	},
	"anomaly_dormancy": {
		Type:        framework.TypeDurationSecond,
		Description: "Silence after which a key's next use is an anomaly (dormant_wake). 0: the default.",
	},
	"anomaly_rate_z": {
		Type:        framework.TypeFloat,
		Description: "How many robust deviations above the key's seasonal baseline a rate must be to be a spike. 0: the default.",
	},
	"anomaly_rate_floor": {
		Type:        framework.TypeInt,
		Description: "Least number of verifications in a detection window that can be a spike, so quiet keys do not alarm on small counts. 0: the default.",
	},
	"anomaly_refusal_burst": {
		Type:        framework.TypeInt,
		Description: "Refusals (INSUFFICIENT_SCOPE, FORBIDDEN_IP, RATE_LIMITED) or wrong secrets for one key in a detection window that make a storm. 0: the default.",
	},
	"anomaly_network_floor": {
		Type:        framework.TypeInt,
		Description: "Least number of distinct client networks in an hour that can be many_networks. 0: the default.",
	},
	"anomaly_off": {
		Type:        framework.TypeCommaStringSlice,
		Description: "Anomaly kinds not to raise for this role: new_network, many_networks, rate_spike, refusal_storm, secret_guessing, dormant_wake.",
	},
}

// config is the detector's Config for the role.
func (a *roleAnomaly) config() anomaly.Config {
	c := anomaly.Config{
		Learning:     a.Learning,
		Dormancy:     a.Dormancy,
		RateZ:        a.RateZ,
		RateFloor:    a.RateFloor,
		RefusalBurst: a.RefusalBurst,
		NetworkFloor: a.NetworkFloor,
	}
	for _, k := range a.Off {
		c.Off = append(c.Off, anomaly.Kind(k))
	}
	return c.WithDefaults()
}

func (a *roleAnomaly) action() string {
	if a.Action == "" {
		return anomalyActionLog
	}
	return a.Action
}

// addResponseData shows the settings in force, defaults filled in.
func (a *roleAnomaly) addResponseData(data map[string]interface{}) {
	c := a.config()
	data["anomaly_action"] = a.action()
	data["anomaly_learning_period"] = int64(c.Learning.Seconds())
	data["anomaly_dormancy"] = int64(c.Dormancy.Seconds())
	data["anomaly_rate_z"] = c.RateZ
	data["anomaly_rate_floor"] = int(c.RateFloor)
	data["anomaly_refusal_burst"] = int(c.RefusalBurst)
	data["anomaly_network_floor"] = int(c.NetworkFloor)
	data["anomaly_off"] = nonNilStrings(a.Off)
}

// update applies the fields present in d; a bad value is an error naming the field.
func (a *roleAnomaly) update(d *framework.FieldData) error {
	if v, ok := d.GetOk("anomaly_action"); ok {
		a.Action = v.(string)
		if a.Action != anomalyActionLog && a.Action != anomalyActionDisable {
			return fmt.Errorf("anomaly_action must be %s or %s", anomalyActionLog, anomalyActionDisable)
		}
	}
	for field, target := range map[string]*time.Duration{"anomaly_learning_period": &a.Learning, "anomaly_dormancy": &a.Dormancy} {
		if v, ok := d.GetOk(field); ok {
			var err error
			if *target, err = durationField(field, v.(int)); err != nil {
				return err
			}
		}
	}
	if v, ok := d.GetOk("anomaly_rate_z"); ok {
		a.RateZ = v.(float64)
	}
	for field, target := range map[string]*uint32{"anomaly_rate_floor": &a.RateFloor, "anomaly_refusal_burst": &a.RefusalBurst, "anomaly_network_floor": &a.NetworkFloor} {
		if v, ok := d.GetOk(field); ok {
			n := v.(int)
			if n < 0 || n > 1<<30 {
				return fmt.Errorf("%s must be between 0 (the default) and %d", field, 1<<30)
			}
			*target = uint32(n)
		}
	}
	if v, ok := d.GetOk("anomaly_off"); ok {
		a.Off = nil
		for _, s := range v.([]string) {
			k := anomaly.Kind(s)
			if !slices.Contains(anomaly.Kinds(), k) {
				return fmt.Errorf("anomaly_off: %.40q is not an anomaly kind (%v)", s, anomaly.Kinds())
			}
			if !slices.Contains(a.Off, string(k)) {
				a.Off = append(a.Off, string(k))
			}
		}
	}
	return nil
}

// validate checks the settings with the detector's own bounds.
func (a *roleAnomaly) validate() error {
	return a.config().Validate()
}
