package audit

import (
	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// The chain itself lives in package auditchain, below the stores that append
// with it; these names keep audit's API whole for its readers and verifiers.

// MaxData is the largest Data, in bytes, a record may have.
const MaxData = auditchain.MaxData

// Head names the last record of a log at some moment; see auditchain.Head.
type Head = auditchain.Head

// Tampering is what a failed verification found was done to a chain.
type Tampering = auditchain.Tampering

// ChainError reports the first place a chain fails to verify.
type ChainError = auditchain.ChainError

// What a failed verification can find.
const (
	Edited    = auditchain.Edited
	Removed   = auditchain.Removed
	Reordered = auditchain.Reordered
	Inserted  = auditchain.Inserted
)

// Hash returns the hex SHA-256 of r's canonical encoding; see auditchain.Hash.
func Hash(r store.AuditRecord) (string, error) { return auditchain.Hash(r) }

// HeadOf returns the head of recs: its last record's.
func HeadOf(recs []store.AuditRecord) Head { return auditchain.HeadOf(recs) }

// Link returns r as the record that follows head; see auditchain.Link.
func Link(head Head, r store.AuditRecord) (store.AuditRecord, error) { return auditchain.Link(head, r) }

// Verify checks recs as a whole log; see auditchain.Verify.
func Verify(recs []store.AuditRecord) error { return auditchain.Verify(recs) }

// VerifyHead checks recs as Verify does and that the log still holds head.
func VerifyHead(recs []store.AuditRecord, head Head) error { return auditchain.VerifyHead(recs, head) }

func checkType(typ string) error { return auditchain.CheckType(typ) }
