package dashboard

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Bounds of the overview's fallback count of keys by status (when the metrics path is
// not readable): it pages through the inventory, at most this many keys.
const (
	overviewListPage = 1000
	overviewListMax  = 5000
	// overviewTopKeys and overviewAnomalies bound the overview's tables.
	overviewTopKeys   = 10
	overviewAnomalies = 50
	// overviewAnomalyWindow is how far back the overview lists anomalies.
	overviewAnomalyWindow = 7 * 24 * time.Hour
)

var keyStatuses = []string{"active", "disabled", "expired", "rotated"}

type statusRow struct {
	Role   string
	Counts []int64 // by keyStatuses
	Total  int64
}

type overviewData struct {
	Statuses     []string
	StatusRows   []statusRow
	StatusTotal  statusRow
	StatusSource string // "metrics" or "inventory"
	StatusAt     time.Time
	StatusPart   bool // the inventory fallback stopped before the last key
	StatusErr    *sectionError

	Hourly, Daily       chart
	HourlyErr, DailyErr *sectionError

	TopUse, TopRefused       []topKey
	TopUseMax, TopRefusedMax int64
	TopUseErr, TopRefusedErr *sectionError

	Anomalies     []anomalyInfo
	AnomaliesMore bool
	AnomaliesErr  *sectionError
	AnomalySince  time.Time
}

// overview is the landing page: keys by status per role, verifications over time, the
// top keys and recent anomalies. Each part is one or two Vault calls made concurrently;
// a part Vault refuses says so in its place.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	e := s.engine(sess)
	var d overviewData
	d.Statuses = keyStatuses
	d.AnomalySince = s.now().Add(-overviewAnomalyWindow).UTC().Truncate(time.Second)
	var wg sync.WaitGroup
	wg.Go(func() { s.keyStatusCounts(ctx, e, &d) })
	wg.Go(func() {
		u, err := e.usage(ctx, url.Values{"granularity": {"hour"}})
		d.Hourly, d.HourlyErr = newChart("Verifications per hour by outcome", u), s.section(err)
	})
	wg.Go(func() {
		u, err := e.usage(ctx, url.Values{"granularity": {"day"}})
		d.Daily, d.DailyErr = newChart("Verifications per day by outcome", u), s.section(err)
	})
	top := func(by string, keys *[]topKey, peak *int64, errp **sectionError) {
		u, err := e.usage(ctx, url.Values{"granularity": {"day"}, "group_by": {"key"}, "top": {by},
			"limit": {itoa(overviewTopKeys)}})
		*errp = s.section(err)
		*keys = u.TopKeys
		for _, k := range u.TopKeys {
			*peak = max(*peak, k.Total)
		}
	}
	wg.Go(func() { top("verifications", &d.TopUse, &d.TopUseMax, &d.TopUseErr) })
	wg.Go(func() { top("refusals", &d.TopRefused, &d.TopRefusedMax, &d.TopRefusedErr) })
	wg.Go(func() {
		l, err := e.listAnomalies(ctx, url.Values{"since": {d.AnomalySince.Format(time.RFC3339)}, "limit": {itoa(overviewAnomalies)}})
		d.AnomaliesErr = s.section(err)
		for _, id := range l.Keys {
			if a, ok := l.KeyInfo[id]; ok {
				a.ID = id
				d.Anomalies = append(d.Anomalies, a)
			}
		}
		slices.Reverse(d.Anomalies) // newest first
		d.AnomaliesMore = l.NextAfter != ""
	})
	wg.Wait()
	s.render(w, r, sess, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Data: d})
}

// keyStatusCounts fills the keys-by-status table: from the metrics path's apikey_keys
// gauges when the person may read it (the engine computes them at most once a minute),
// else by paging through the inventory, at most overviewListMax keys.
func (s *Server) keyStatusCounts(ctx context.Context, e engine, d *overviewData) {
	counts := keyStatusCount{}
	text, err := e.v.raw(ctx, e.token, e.path("metrics"))
	if err == nil {
		counts, d.StatusAt = parseKeyGauges(text)
		d.StatusSource = "metrics"
	} else {
		d.StatusSource = "inventory"
		after, seen := "", 0
		for seen < overviewListMax {
			l, err := e.listKeys(ctx, url.Values{"limit": {itoa(overviewListPage)}, "after": {after}})
			if err != nil {
				d.StatusErr = s.section(err)
				return
			}
			for _, id := range l.Keys {
				info := l.KeyInfo[id]
				if counts[info.Role] == nil {
					counts[info.Role] = map[string]int64{}
				}
				counts[info.Role][info.Status]++
			}
			seen += len(l.Keys)
			if l.NextAfter == "" {
				break
			}
			after = l.NextAfter
		}
		d.StatusPart = seen >= overviewListMax
		d.StatusAt = s.now()
	}
	d.StatusTotal = statusRow{Role: "all roles", Counts: make([]int64, len(keyStatuses))}
	for _, role := range slices.Sorted(maps.Keys(counts)) {
		row := statusRow{Role: role, Counts: make([]int64, len(keyStatuses))}
		for i, st := range keyStatuses {
			row.Counts[i] = counts[role][st]
			row.Total += row.Counts[i]
			d.StatusTotal.Counts[i] += row.Counts[i]
		}
		d.StatusTotal.Total += row.Total
		d.StatusRows = append(d.StatusRows, row)
	}
}
