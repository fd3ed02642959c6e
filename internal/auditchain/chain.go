// Package auditchain builds and verifies the hash chain of a tenant's audit
// log: how a record is hashed (Hash), how a store appends one (Link) and how
// a verifier checks a log (Verify, VerifyHead). It is a leaf below both the
// stores, which append with Link, and package audit, which records events,
// so that no store needs to import audit.
package auditchain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// MaxData is the largest Data, in bytes, a record may have.
const MaxData = 64 << 10

// hashDomain starts every hashed encoding, so a record hash cannot be
// mistaken for the hash of anything else.
const hashDomain = "bulkhead audit record v1\x00"

// Hash returns the hex SHA-256 of r's canonical encoding, the value of
// r.Hash in a chain. r.Hash itself is not hashed. The encoding is
//
//	"bulkhead audit record v1\x00"
//	seq         as 8 bytes, big-endian
//	time        RFC 3339 with nanoseconds, in UTC   \
//	type                                             | each as an 8-byte
//	data        compact JSON, <, >, & escaped        | big-endian length,
//	prev        hex, as stored                      /  then the bytes
//
// so no two records share an encoding. Data is hashed in the form
// encoding/json writes it (compact, HTML characters escaped), so a log
// re-encoded or re-indented by encoding/json still verifies; a verifier in
// another language must hash Data as compacted this way, and must not reorder
// object keys. Data that is not JSON is an error.
func Hash(r store.AuditRecord) (string, error) {
	data, err := canonical(r.Data)
	if err != nil {
		return "", err
	}
	return hashOf(r.Seq, r.Time, r.Type, data, r.Prev), nil
}

func hashOf(seq int64, t time.Time, typ string, data []byte, prev string) string {
	var stack [512]byte
	buf := append(stack[:0], hashDomain...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(seq))
	var tbuf [64]byte
	buf = appendField(buf, t.UTC().AppendFormat(tbuf[:0], time.RFC3339Nano))
	buf = appendField(buf, typ)
	buf = appendField(buf, data)
	buf = appendField(buf, prev)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

func appendField[S string | []byte](buf []byte, b S) []byte {
	buf = binary.BigEndian.AppendUint64(buf, uint64(len(b)))
	return append(buf, b...)
}

// canonical returns data as encoding/json writes a json.RawMessage: compact,
// with <, >, &, U+2028 and U+2029 escaped. Empty data is JSON null.
func canonical(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return []byte("null"), nil
	}
	if isCanonical(data) && json.Valid(data) {
		return data, nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return nil, fmt.Errorf("data is not JSON: %w", err)
	}
	var escaped bytes.Buffer
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.Bytes(), nil
}

// isCanonical reports whether data, if it is JSON, is already canonical: no
// whitespace outside strings and nothing HTMLEscape would escape.
func isCanonical(data []byte) bool {
	inString, escaped := false, false
	for i, c := range data {
		switch {
		case c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && i+2 < len(data) && data[i+1] == 0x80 && data[i+2]&^1 == 0xA8: // U+2028, U+2029
			return false
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}

// Head names the last record of a log at some moment. A verifier that keeps
// it can later check, with VerifyHead, that nothing up to it was changed or
// removed. The zero Head is the empty log.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// HeadOf returns the head of recs: its last record's.
func HeadOf(recs []store.AuditRecord) Head {
	if len(recs) == 0 {
		return Head{}
	}
	last := recs[len(recs)-1]
	return Head{Seq: last.Seq, Hash: last.Hash}
}

var typePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// CheckType refuses an event type that is not 1-64 of [a-z0-9_.-] starting
// with a letter.
func CheckType(typ string) error {
	if !typePattern.MatchString(typ) {
		return fmt.Errorf("%w: audit event type %q must be 1-64 of [a-z0-9_.-], starting with a letter", kind.Invalid, typ)
	}
	return nil
}

// Check returns recs as Link would make them, before the store knows where
// they go: a zero Time becomes now, and each must link (see Link). Stores call
// it before they take their write lock, so a bad record costs no lock.
func Check(recs []store.AuditRecord, now time.Time) ([]store.AuditRecord, error) {
	checked := make([]store.AuditRecord, len(recs))
	for i, r := range recs {
		if r.Time.IsZero() {
			r.Time = now
		}
		var err error
		if checked[i], err = Link(Head{}, r); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
	}
	return checked, nil
}

// Link returns r as the record that follows head in a chain (the zero Head
// for the first record): with Seq head.Seq+1, Prev head.Hash, Time in UTC,
// Data canonical (see Hash) and Hash set. Stores call it to append, so every
// chain is built by one function. A record whose Type is not 1-64 of
// [a-z0-9_.-] starting with a letter, whose Time is zero or outside years
// 1-9999, or whose Data is not JSON is an error wrapping kind.Invalid; Data
// over MaxData bytes wraps kind.TooLarge.
func Link(head Head, r store.AuditRecord) (store.AuditRecord, error) {
	if err := CheckType(r.Type); err != nil {
		return store.AuditRecord{}, err
	}
	if len(r.Data) > MaxData {
		return store.AuditRecord{}, fmt.Errorf("%w: audit %s: data is %d bytes, over %d", kind.TooLarge, r.Type, len(r.Data), MaxData)
	}
	if y := r.Time.UTC().Year(); r.Time.IsZero() || y < 1 || y > 9999 {
		return store.AuditRecord{}, fmt.Errorf("%w: audit %s: time %v is zero or out of range", kind.Invalid, r.Type, r.Time)
	}
	data, err := canonical(r.Data)
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("%w: audit %s: %v", kind.Invalid, r.Type, err)
	}
	out := store.AuditRecord{
		Seq:  head.Seq + 1,
		Time: r.Time.UTC(),
		Type: r.Type,
		Data: data,
		Prev: head.Hash,
	}
	out.Hash = hashOf(out.Seq, out.Time, out.Type, out.Data, out.Prev)
	return out, nil
}

// Tampering is what a failed verification found was done to a chain.
type Tampering int

const (
	Edited    Tampering = iota + 1 // a record's contents changed (with or without its hash)
	Removed                        // records are missing
	Reordered                      // records are out of order
	Inserted                       // records were added that the store did not append
)

func (t Tampering) String() string {
	switch t {
	case Edited:
		return "edited"
	case Removed:
		return "removed"
	case Reordered:
		return "reordered"
	case Inserted:
		return "inserted"
	}
	return fmt.Sprintf("Tampering(%d)", int(t))
}

// ChainError reports the first place a chain fails to verify: the seq of the
// first bad record (for records removed, the first missing seq) and what was
// done there. When a change fits more than one story, What is the likeliest
// and Detail says the rest.
type ChainError struct {
	Seq    int64
	What   Tampering
	Detail string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s: %s", e.Seq, e.What, e.Detail)
}

// Verify checks recs as a whole log, as read back from the API or a file: seq
// numbers consecutive from 1, the first Prev empty, each Prev equal to the Hash
// before it and each Hash equal to Hash of its record. It returns nil or a
// *ChainError for the first bad record.
//
// Verify alone cannot see records removed from the end of a log, or a log
// rewritten from some record on with every hash recomputed: only a head kept
// from before can (VerifyHead).
func Verify(recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	byHash := make(map[string]int, len(recs))
	for i, r := range recs {
		if _, dup := byHash[r.Hash]; !dup {
			byHash[r.Hash] = i
		}
	}
	for i := range recs {
		want, wantPrev := int64(1), ""
		if i > 0 {
			want, wantPrev = recs[i-1].Seq+1, recs[i-1].Hash
		}
		if recs[i].Seq != want {
			return seqError(recs, i, want)
		}
		if recs[i].Prev != wantPrev {
			return linkError(recs, i, byHash)
		}
		if err := checkHash(recs, i); err != nil {
			return err
		}
	}
	return nil
}

// VerifyHead checks recs as Verify does and also that the log still holds
// head, the head a verifier kept from an earlier read (the zero Head holds
// nothing): the record numbered head.Seq is there and has head.Hash. Records
// appended since head are fine. So records removed from the end, or the
// chain rewritten up to head with its hashes recomputed, are found too.
func VerifyHead(recs []store.AuditRecord, head Head) error {
	if err := Verify(recs); err != nil {
		return err
	}
	if head.Seq == 0 {
		return nil
	}
	last := HeadOf(recs).Seq
	if head.Seq > last {
		return &ChainError{Seq: last + 1, What: Removed,
			Detail: fmt.Sprintf("the log ends at seq %d, before the kept head, seq %d", last, head.Seq)}
	}
	if got := recs[head.Seq-1].Hash; got != head.Hash {
		return &ChainError{Seq: head.Seq, What: Edited,
			Detail: fmt.Sprintf("hash %s is not the kept head's %s: the log up to here was rewritten", got, head.Hash)}
	}
	return nil
}

// seqError explains recs[i], which has a seq other than want.
func seqError(recs []store.AuditRecord, i int, want int64) error {
	got := recs[i].Seq
	later := func(seq int64) bool {
		for _, r := range recs[i+1:] {
			if r.Seq == seq {
				return true
			}
		}
		return false
	}
	switch {
	case got < want:
		return &ChainError{Seq: got, What: Inserted,
			Detail: fmt.Sprintf("seq %d appears again where seq %d belongs", got, want)}
	case later(want) && later(got):
		return &ChainError{Seq: got, What: Inserted,
			Detail: fmt.Sprintf("seq %d appears twice, first where seq %d belongs", got, want)}
	case later(want):
		return &ChainError{Seq: want, What: Reordered,
			Detail: fmt.Sprintf("seq %d comes after seq %d", want, got)}
	case got == want+1:
		return &ChainError{Seq: want, What: Removed, Detail: fmt.Sprintf("seq %d is missing", want)}
	default:
		return &ChainError{Seq: want, What: Removed, Detail: fmt.Sprintf("seqs %d to %d are missing", want, got-1)}
	}
}

// linkError explains recs[i], whose seq is right but whose Prev is not the
// Hash of the record before it.
func linkError(recs []store.AuditRecord, i int, byHash map[string]int) error {
	r := recs[i]
	if k, ok := byHash[r.Prev]; ok && r.Prev != "" {
		if k < i-1 {
			return &ChainError{Seq: recs[k+1].Seq, What: Inserted,
				Detail: fmt.Sprintf("seq %d follows seq %d, not the %d record(s) between", r.Seq, recs[k].Seq, i-1-k)}
		}
		if k > i {
			return &ChainError{Seq: r.Seq, What: Reordered,
				Detail: fmt.Sprintf("this record follows the one now at seq %d", recs[k].Seq)}
		}
	}
	if orig, ok := renumberedFrom(r); ok && orig != r.Seq {
		if orig > r.Seq {
			return &ChainError{Seq: r.Seq, What: Removed,
				Detail: fmt.Sprintf("this record was seq %d: %d record(s) before it were removed and the rest renumbered", orig, orig-r.Seq)}
		}
		return &ChainError{Seq: r.Seq, What: Inserted,
			Detail: fmt.Sprintf("this record was seq %d: %d record(s) were inserted before it", orig, r.Seq-orig)}
	}
	if h, err := Hash(r); err == nil && h == r.Hash && i > 0 {
		return &ChainError{Seq: recs[i-1].Seq, What: Edited,
			Detail: fmt.Sprintf("seq %d's prev is not this record's hash: it was changed and its hash recomputed", r.Seq)}
	}
	if i == 0 {
		return &ChainError{Seq: r.Seq, What: Edited, Detail: "the first record's prev is not empty"}
	}
	return &ChainError{Seq: r.Seq, What: Edited, Detail: "neither prev nor hash match: the record was changed or replaced"}
}

// checkHash checks recs[i]'s hash; seq and prev are already known good.
func checkHash(recs []store.AuditRecord, i int) error {
	r := recs[i]
	h, err := Hash(r)
	if err != nil {
		return &ChainError{Seq: r.Seq, What: Edited, Detail: err.Error()}
	}
	if h == r.Hash {
		return nil
	}
	if i+1 < len(recs) && recs[i+1].Prev == r.Prev {
		return &ChainError{Seq: r.Seq, What: Inserted,
			Detail: fmt.Sprintf("seq %d also follows this record's predecessor", recs[i+1].Seq)}
	}
	if orig, ok := renumberedFrom(r); ok {
		if orig > r.Seq {
			return &ChainError{Seq: r.Seq, What: Removed,
				Detail: fmt.Sprintf("this record was seq %d: %d record(s) before it were removed and the rest renumbered", orig, orig-r.Seq)}
		}
		return &ChainError{Seq: r.Seq, What: Inserted,
			Detail: fmt.Sprintf("this record was seq %d: %d record(s) were inserted before it", orig, r.Seq-orig)}
	}
	return &ChainError{Seq: r.Seq, What: Edited, Detail: "hash does not match the record"}
}

// renumberWindow is how far from its seq renumberedFrom looks for the seq a
// record was hashed with.
const renumberWindow = 64

// renumberedFrom reports the seq r's Hash was computed with, if it is r.Seq
// or within renumberWindow of it: a record moved by removals or insertions
// before it and renumbered keeps its old hash.
func renumberedFrom(r store.AuditRecord) (int64, bool) {
	data, err := canonical(r.Data)
	if err != nil {
		return 0, false
	}
	for d := range int64(renumberWindow + 1) {
		for _, seq := range []int64{r.Seq + d, r.Seq - d} {
			if seq >= 1 && hashOf(seq, r.Time, r.Type, data, r.Prev) == r.Hash {
				return seq, true
			}
		}
	}
	return 0, false
}
