package store

import "time"

// Raw is one tenant incarnation's stored rows as they are: every content
// column still sealed, every full-text posting still a blind token. It is
// what moves a tenant from one backend to another (bulkhead migrate)
// without decrypting anything: the sealing (package seal) is the same in
// every backend, and the ciphertexts are bound to what Raw keeps (user,
// session, document id and ordinal, memory id, secret name), not to the
// backend's own row ids.
type Raw struct {
	Sessions  []RawSession
	Messages  []RawMessage // in the order they were appended
	Secrets   []RawSecret
	Documents []RawDocument
	Chunks    []RawChunk
	Memories  []RawMemory
	Audit     []AuditRecord // in chain order
}

// RawSession is a session row.
type RawSession struct {
	UserID, SessionID    string
	CreatedAt, UpdatedAt time.Time
}

// RawMessage is a message row; Content and Meta are sealed (Meta nil when
// the message has none).
type RawMessage struct {
	UserID, SessionID, Role string
	Content, Meta           []byte
	CreatedAt               time.Time
}

// RawSecret is a secret row; Value is sealed.
type RawSecret struct {
	Name      string
	Value     []byte
	UpdatedAt time.Time
}

// RawDocument is a document row: HashMAC the keyed hash that finds a
// re-ingested text, Hash, Text and Metadata sealed.
type RawDocument struct {
	ID                            string
	HashMAC, Hash, Text, Metadata []byte
	Chunks                        int
	CreatedAt                     time.Time
}

// RawChunk is a chunk row with its postings: Text and Embedding sealed,
// Tokens the chunk's blind tokens, with repeats, sorted.
type RawChunk struct {
	DocumentID      string
	Ordinal         int
	Text, Embedding []byte
	Tokens          []string
}

// RawMemory is a memory row with its postings; ID is kept, as its
// ciphertexts are bound to it.
type RawMemory struct {
	ID              int64
	UserID          string
	Text, Embedding []byte
	CreatedAt       time.Time
	Tokens          []string
}

// Counts returns how many rows Raw holds, by table, for comparing a copy
// with its source.
func (r Raw) Counts() map[string]int {
	return map[string]int{
		"sessions": len(r.Sessions), "messages": len(r.Messages), "secrets": len(r.Secrets),
		"documents": len(r.Documents), "chunks": len(r.Chunks), "memories": len(r.Memories),
		"audit": len(r.Audit),
	}
}
