// Package usagestats counts verify outcomes over time, Vault-free: per key, per role and
// per mount, in hourly and daily buckets by outcome code, with verify tags per day and
// the client networks each key was used from. It is the counting core of issue 12
// (monitoring); the plugin wires it in: verify calls Recorder.Record (memory only, never
// a storage write), the periodic function drains Recorder.Dirty, merges each delta into
// the stored Record with Merge, writes it (Record.MarshalBinary) and calls
// Recorder.Flushed, and the read paths answer from a stored Record merged with
// Recorder.Peek. A failover or restart keeps every flushed count and loses at most what
// was counted since the last successful flush on the node that went away.
//
// Everything is bounded. A Record holds at most Config.Hours hourly and Config.Days
// daily buckets per series, sparse (an hour or a day without traffic costs nothing);
// at most Config.MaxTagValues distinct tag values per day, plus one "other" overflow
// value per tag name and at most Config.MaxTagNames names (then name and value "other");
// and at most Config.MaxNetworks client networks, evicting the least recently seen.
//
// Worst case, a key-day holds MaxTagValues+MaxTagNames+1 tag entries (41 by default):
// with maximal names and values for 90 days, about 750 KB encoded, under the 1 MiB of a
// Raft storage entry; real tags (routes, regions) are a few bytes each.
//
// Cost, measured with the package benchmarks on linux/amd64, 2 shared cores, go1.26:
//
//   - Record for a repeat of an existing key with a client address and no tags: about
//     80-105 ns/op, 0 allocs/op (BenchmarkRecord); with two tags about 340 ns/op,
//     0 allocs/op; from both cores over 1000 keys about 115-150 ns/op.
//   - Memory (BenchmarkMemory): a key used since the last flush costs about 460 bytes in
//     the Recorder (its entry, one hourly and one daily bucket, one network), so 100k keys
//     active between two flushes take about 46 MB. With the plugin flushing, that is the
//     whole in-memory cost of a week of traffic: the week lives in storage, where a key
//     with a week of traffic in every hour (48 hourly and 7 daily buckets, two tags a
//     day, two networks) encodes to about 540 bytes: 100k keys about 54 MB of storage.
//     Decoded, such a record takes about 6.8 KB, which is why TopKeys streams records.
//   - A Recorder that never flushes a week of hourly traffic (its bound, reached by a
//     node that cannot write) holds about 6.3 KB per key: 100k keys about 630 MB.
package usagestats
