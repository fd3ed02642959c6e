package auditchain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// chain returns a log of n records as a store would append them.
func chain(t *testing.T, n int) []store.AuditRecord {
	t.Helper()
	var recs []store.AuditRecord
	var head auditchain.Head
	base := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range n {
		r, err := auditchain.Link(head, store.AuditRecord{
			Time: base.Add(time.Duration(i) * time.Millisecond),
			Type: "tool.call",
			Data: json.RawMessage(fmt.Sprintf(`{"tool":"search","args":{"q":"string"},"decision":"allow","n":%d}`, i+1)),
		})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		head = auditchain.HeadOf(recs)
	}
	return recs
}

// rehash recomputes r's hash, as a forger would.
func rehash(t *testing.T, r *store.AuditRecord) {
	t.Helper()
	h, err := auditchain.Hash(*r)
	if err != nil {
		t.Fatal(err)
	}
	r.Hash = h
}

// relink rewrites recs from index i on into a valid chain, as a forger who
// recomputes every hash would.
func relink(t *testing.T, recs []store.AuditRecord, i int) []store.AuditRecord {
	t.Helper()
	head := auditchain.HeadOf(recs[:i])
	for j := i; j < len(recs); j++ {
		r, err := auditchain.Link(head, recs[j])
		if err != nil {
			t.Fatal(err)
		}
		recs[j] = r
		head = auditchain.Head{Seq: r.Seq, Hash: r.Hash}
	}
	return recs
}

func TestVerify(t *testing.T) {
	const n = 6 // seqs 1..6
	tests := []struct {
		name   string
		tamper func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord
		head   bool // verify against the head of the untouched log
		want   auditchain.Tampering
		seq    int64 // of the first bad record; with want 0, the log verifies
	}{
		{name: "untouched", tamper: nil},
		{name: "untouched with head", tamper: nil, head: true},
		{name: "empty", tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord { return nil }},
		{name: "data reformatted", tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2].Data = json.RawMessage("{\n  \"tool\": \"search\",\n  \"args\": {\"q\": \"string\"},\n  \"decision\": \"allow\",\n  \"n\": 3\n}")
			return recs
		}},
		{name: "edit data", want: auditchain.Edited, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2].Data = json.RawMessage(`{"tool":"search","args":{"q":"string"},"decision":"deny","n":3}`)
			return recs
		}},
		{name: "edit type", want: auditchain.Edited, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2].Type = "cache.hit"
			return recs
		}},
		{name: "edit time", want: auditchain.Edited, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2].Time = recs[2].Time.Add(time.Nanosecond)
			return recs
		}},
		{name: "edit prev", want: auditchain.Edited, seq: 4, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[3].Prev = recs[3].Hash
			return recs
		}},
		{name: "edit hash", want: auditchain.Edited, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2].Hash = recs[1].Hash
			return recs
		}},
		{name: "data not JSON", want: auditchain.Edited, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2].Data = json.RawMessage(`{"tool":`)
			return recs
		}},
		{name: "edit data and its hash", want: auditchain.Edited, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2].Data = json.RawMessage(`{"decision":"deny"}`)
			rehash(t, &recs[2])
			return recs
		}},
		{name: "edit the last record and its hash", tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[n-1].Data = json.RawMessage(`{"decision":"deny"}`)
			rehash(t, &recs[n-1])
			return recs // only a kept head shows it: next case
		}},
		{name: "edit the last record and its hash, with head", head: true, want: auditchain.Edited, seq: n,
			tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
				recs[n-1].Data = json.RawMessage(`{"decision":"deny"}`)
				rehash(t, &recs[n-1])
				return recs
			}},
		{name: "edit data and rewrite the rest, with head", head: true, want: auditchain.Edited, seq: n,
			tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
				recs[2].Data = json.RawMessage(`{"decision":"deny"}`)
				return relink(t, recs, 2)
			}},
		{name: "remove a middle record", want: auditchain.Removed, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			return slices.Delete(recs, 2, 3)
		}},
		{name: "remove two middle records", want: auditchain.Removed, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			return slices.Delete(recs, 2, 4)
		}},
		{name: "remove a middle record and renumber", want: auditchain.Removed, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs = slices.Delete(recs, 2, 3)
			for i := 2; i < len(recs); i++ {
				recs[i].Seq--
			}
			return recs
		}},
		{name: "remove a middle record and rewrite the rest, with head", head: true, want: auditchain.Removed, seq: n,
			tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
				return relink(t, slices.Delete(recs, 2, 3), 2)
			}},
		{name: "remove the first record", want: auditchain.Removed, seq: 1, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			return recs[1:]
		}},
		{name: "remove the first record and renumber", want: auditchain.Removed, seq: 1, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs = recs[1:]
			for i := range recs {
				recs[i].Seq--
			}
			return recs
		}},
		{name: "remove the last record", tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			return recs[:n-1] // only a kept head shows it: next case
		}},
		{name: "remove the last record, with head", head: true, want: auditchain.Removed, seq: n,
			tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord { return recs[:n-1] }},
		{name: "remove everything, with head", head: true, want: auditchain.Removed, seq: 1,
			tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord { return nil }},
		{name: "swap two records", want: auditchain.Reordered, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2], recs[3] = recs[3], recs[2]
			return recs
		}},
		{name: "swap two distant records", want: auditchain.Reordered, seq: 2, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[1], recs[4] = recs[4], recs[1]
			return recs
		}},
		{name: "swap two records and renumber", want: auditchain.Reordered, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			recs[2], recs[3] = recs[3], recs[2]
			recs[2].Seq, recs[3].Seq = 3, 4
			return recs
		}},
		{name: "insert a copy", want: auditchain.Inserted, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			return slices.Insert(recs, 3, recs[2])
		}},
		{name: "insert a linked record and renumber", want: auditchain.Inserted, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			forged, err := auditchain.Link(auditchain.HeadOf(recs[:2]), store.AuditRecord{Time: recs[1].Time, Type: "policy.set", Data: json.RawMessage(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			recs = slices.Insert(recs, 2, forged)
			for i := 3; i < len(recs); i++ {
				recs[i].Seq++
			}
			return recs
		}},
		{name: "insert an unlinked record and renumber", want: auditchain.Inserted, seq: 3, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			forged := store.AuditRecord{Seq: 3, Time: recs[1].Time, Type: "policy.set", Data: json.RawMessage(`{}`), Prev: recs[1].Hash, Hash: recs[1].Hash}
			recs = slices.Insert(recs, 2, forged)
			for i := 3; i < len(recs); i++ {
				recs[i].Seq++
			}
			return recs
		}},
		{name: "insert records at the end, with head", head: true, tamper: func(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
			return chain(t, n+2) // the same log, grown: appending is what logs do
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := chain(t, n)
			head := auditchain.HeadOf(recs)
			if tt.tamper != nil {
				recs = tt.tamper(t, slices.Clone(recs))
			}
			var err error
			if tt.head {
				err = auditchain.VerifyHead(recs, head)
			} else {
				err = auditchain.Verify(recs)
			}
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var ce *auditchain.ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *ChainError", err)
			}
			if ce.What != tt.want || ce.Seq != tt.seq {
				t.Fatalf("got %v, want seq %d %v", err, tt.seq, tt.want)
			}
		})
	}
}

// TestHashEncoding checks that fields cannot trade bytes: moving a byte from
// one field to the next changes the hash.
func TestHashEncoding(t *testing.T) {
	base := store.AuditRecord{Seq: 1, Time: time.Unix(0, 0), Type: "ab", Data: json.RawMessage(`"c"`), Prev: "d"}
	moved := base
	moved.Type, moved.Data = "a", json.RawMessage(`"bc"`)
	h1, err := auditchain.Hash(base)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := auditchain.Hash(moved)
	if err != nil {
		t.Fatal(err)
	}
	if h1 == h2 {
		t.Fatal("records with bytes moved between fields hash the same")
	}
	if len(h1) != 64 {
		t.Fatalf("hash %q: got %d hex digits, want 64", h1, len(h1))
	}
	// The time zone does not matter, only the instant.
	local := base
	local.Time = base.Time.In(time.FixedZone("X", 5*3600))
	if h3, _ := auditchain.Hash(local); h3 != h1 {
		t.Errorf("the same instant in another zone hashes differently")
	}
}

func TestLinkRefuses(t *testing.T) {
	good := store.AuditRecord{Time: time.Now(), Type: "tool.call", Data: json.RawMessage(`{}`)}
	tests := []struct {
		name string
		edit func(*store.AuditRecord)
		want error
	}{
		{"empty type", func(r *store.AuditRecord) { r.Type = "" }, kind.Invalid},
		{"upper-case type", func(r *store.AuditRecord) { r.Type = "Tool.call" }, kind.Invalid},
		{"zero time", func(r *store.AuditRecord) { r.Time = time.Time{} }, kind.Invalid},
		{"data not JSON", func(r *store.AuditRecord) { r.Data = json.RawMessage(`{`) }, kind.Invalid},
		{"data too large", func(r *store.AuditRecord) { r.Data = make(json.RawMessage, auditchain.MaxData+1) }, kind.TooLarge},
	}
	for _, tt := range tests {
		r := good
		tt.edit(&r)
		if _, err := auditchain.Link(auditchain.Head{}, r); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	r, err := auditchain.Link(auditchain.Head{Seq: 41, Hash: "ab"}, good)
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 42 || r.Prev != "ab" || r.Time.Location() != time.UTC {
		t.Errorf("Link: got seq %d, prev %q, time in %v; want 42, ab, UTC", r.Seq, r.Prev, r.Time.Location())
	}
}

// TestCanonicalData checks that a record's Data is stored as encoding/json
// writes it, so that a log sent through encoding/json keeps its hashes.
func TestCanonicalData(t *testing.T) {
	for _, data := range []string{
		`{"a":1}`,
		"{ \"a\" : [ 1 , 2 ],\n\t\"b\" : \"x y\" }",
		`{"tag":"<b>&amp;</b>"}`,
		`"line\u2028sep"`,
		"\"line\u2028sep\u2029\"",
		`{"q":"say \"hi\"  there","e":"\\"}`,
		`  null `,
		`[]`,
		`{"日本":"語"}`,
	} {
		r, err := auditchain.Link(auditchain.Head{}, store.AuditRecord{Time: time.Now(), Type: "x", Data: json.RawMessage(data)})
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		want, err := json.Marshal(json.RawMessage(data))
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Data) != string(want) {
			t.Errorf("%q: got %s, want %s", data, r.Data, want)
		}
	}
}

func TestCheck(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	got, err := auditchain.Check([]store.AuditRecord{{Type: "a.b", Data: json.RawMessage(`{}`)}}, now)
	if err != nil || len(got) != 1 || !got[0].Time.Equal(now) || got[0].Hash == "" {
		t.Fatalf("Check of a good record: %+v, %v; want it timed now and hashed", got, err)
	}
	if _, err := auditchain.Check([]store.AuditRecord{{Type: "a.b", Data: json.RawMessage(`{}`)}, {Type: "Bad Type"}}, now); err == nil || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("Check of a bad second record: %v; want an error naming record 1", err)
	}
}
