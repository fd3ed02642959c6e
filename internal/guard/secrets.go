package guard

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math"
	"math/bits"
	"slices"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// Other tenants' secrets.
//
// The guard must recognize tenant B's secret in tenant A's answer without
// holding B's plaintext. For each secret it keeps keyed hashes (HMAC-SHA256
// with a key made at process start, cut to 128 bits) of tiles: disjoint
// windows, at offsets 0, n, 2n, …, of the squeezed view of each of the
// secret's encodings (textnorm.Encodings: plain, reversed, rot13, hex,
// base64 and base32 with their interiors at every alignment). A tile is
// 16 letters and digits of the plain, reversed and rot13 forms and 32 of the
// encoded ones, so it carries at least 16 bytes of the secret. An answer's
// squeezed view is hashed at every position for both tile lengths (a
// rolling hash picks the candidates, HMAC confirms them); a tile of another
// tenant's secret blocks it. Any leak of at least 2n-1 consecutive letters
// and digits of a form holds a whole tile.
//
// The check is no oracle because only secrets with enough entropy are
// tracked (at least 16 bytes, two character classes, and an estimated 64
// bits: see secretBits), and the tiles do not overlap: confirming one tile
// needs a guess of all of its (about 64 bits or more) at once, and knowing
// one tile tells nothing about the next, so the tiles cannot be found one
// character at a time. A low-entropy secret (a word, a short PIN) is not
// tracked at all: its absence from answers is the redactor's job for its
// own tenant, and no other tenant may learn whether it guessed it.
const (
	minSecretLen  = 16
	minSecretBits = 64
	tileShort     = 16
	maxTile       = 32
)

// secretTile is one tile of one secret: its MAC and its filter key (the top
// bits of its rolling hash, all the filter keeps).
type secretTile struct {
	mac  [16]byte
	roll uint64 // truncated to filterKeep bits
	n    uint8
}

const filterKeep = 26 // bits of a tile's rolling hash kept

// secretKeys are the guard's per-process keys for secrets.
type secretKeys struct {
	mac  []byte
	base uint64 // odd multiplier of the rolling hash
	pow  [maxTile + 1]uint64
}

func (k *secretKeys) init(mac []byte, base uint64) {
	k.mac, k.base = mac, base|1
	k.pow[0] = 1
	for i := 1; i <= maxTile; i++ {
		k.pow[i] = k.pow[i-1] * k.base
	}
}

// roll is the rolling hash of w.
func (k *secretKeys) roll(w []byte) uint64 {
	var h uint64
	for _, c := range w {
		h = h*k.base + uint64(c) + 1
	}
	return h
}

func (k *secretKeys) sum(h hash.Hash, w []byte) (out [16]byte) {
	h.Reset()
	h.Write(w)
	var full [sha256.Size]byte
	copy(out[:], h.Sum(full[:0]))
	return out
}

// secretBits estimates the entropy of v in bits: its length times the
// lesser of the bits per character of the character classes it uses and
// its empirical per-character entropy (with the Miller–Madow correction for
// short samples).
func secretBits(v []byte) float64 {
	if len(v) == 0 {
		return 0
	}
	var classes [4]bool // lower, upper, digit, other
	counts := map[byte]int{}
	for _, c := range v {
		counts[c]++
		switch {
		case 'a' <= c && c <= 'z':
			classes[0] = true
		case 'A' <= c && c <= 'Z':
			classes[1] = true
		case '0' <= c && c <= '9':
			classes[2] = true
		default:
			classes[3] = true
		}
	}
	alphabet, kinds := 0, 0
	for i, sizes := range []int{26, 26, 10, 33} {
		if classes[i] {
			alphabet += sizes
			kinds++
		}
	}
	if kinds < 2 {
		return 0 // one class: a word, a number; not random enough to trust
	}
	n := float64(len(v))
	var h float64
	for _, k := range counts {
		p := float64(k) / n
		h -= p * math.Log2(p)
	}
	h += float64(len(counts)-1) / (2 * n * math.Ln2)
	return n * min(h, math.Log2(float64(alphabet)))
}

// tracked reports whether v has enough entropy for the guard to look for it
// in other tenants' answers.
func tracked(v []byte) bool {
	return len(v) >= minSecretLen && secretBits(v) >= minSecretBits
}

func (k *secretKeys) tiles(v []byte) []secretTile {
	h := hmac.New(sha256.New, k.mac)
	var out []secretTile
	seen := map[[16]byte]bool{}
	for _, e := range textnorm.Encodings(string(v)) {
		_, q := textnorm.Views(e.Text)
		n := maxTile
		if e.Form == textnorm.Plain || e.Form == textnorm.Reversed || e.Form == textnorm.Rot13 || e.Form == textnorm.Query {
			n = tileShort
		}
		for off := 0; off+n <= len(q); off += n {
			w := []byte(q[off : off+n])
			t := secretTile{mac: k.sum(h, w), roll: k.roll(w) >> (64 - filterKeep), n: uint8(n)}
			if !seen[t.mac] {
				seen[t.mac] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// secretSet is every tenant's tiles, indexed. It is immutable.
type secretSet struct {
	keys   *secretKeys
	owners map[[16]byte][]tenant.ID
	filter []uint64
	lens   []int
	ids    []tenant.ID // tenants with tiles
}

func newSecretSet(keys *secretKeys, byTenant map[tenant.ID]map[string][]secretTile) *secretSet {
	ss := &secretSet{keys: keys, owners: map[[16]byte][]tenant.ID{}}
	var total int
	for _, byName := range byTenant {
		for _, ts := range byName {
			total += len(ts)
		}
	}
	if total == 0 {
		return ss
	}
	lg := min(filterKeep, max(12, bits.Len(uint(total*256))))
	ss.filter = make([]uint64, (1<<lg)/64)
	for id, byName := range byTenant {
		ss.ids = append(ss.ids, id)
		for _, ts := range byName {
			for _, t := range ts {
				if !slices.Contains(ss.owners[t.mac], id) {
					ss.owners[t.mac] = append(ss.owners[t.mac], id)
				}
				b := t.roll >> (filterKeep - lg)
				ss.filter[b>>6] |= 1 << (b & 63)
				if !slices.Contains(ss.lens, int(t.n)) {
					ss.lens = append(ss.lens, int(t.n))
				}
			}
		}
	}
	return ss
}

// others reports whether the set holds secrets of a tenant other than self.
func (ss *secretSet) others(self tenant.ID) bool {
	return ss != nil && slices.ContainsFunc(ss.ids, func(id tenant.ID) bool { return id != self })
}

// find appends to hit the owners other than self of tiles at positions
// [from, to) of the squeezed view buf.
func (ss *secretSet) find(buf []byte, from, to int, self tenant.ID, hit []tenant.ID) []tenant.ID {
	k := ss.keys
	lg := uint(bits.Len(uint(len(ss.filter)*64)) - 1)
	var h hash.Hash
	for _, n := range ss.lens {
		end := min(to, len(buf)-n+1)
		if from >= end {
			continue
		}
		top := k.pow[n-1]
		r := k.roll(buf[from : from+n])
		for i := from; ; i++ {
			b := (r >> (64 - filterKeep)) >> (filterKeep - lg)
			if ss.filter[b>>6]&(1<<(b&63)) != 0 {
				if h == nil {
					h = hmac.New(sha256.New, k.mac)
				}
				for _, o := range ss.owners[k.sum(h, buf[i:i+n])] {
					if o != self && !slices.Contains(hit, o) {
						hit = append(hit, o)
					}
				}
			}
			if i+1 >= end {
				break
			}
			r = (r-(uint64(buf[i])+1)*top)*k.base + uint64(buf[i+n]) + 1
		}
	}
	return hit
}

// newSecretKeys makes the per-process keys from 40 random bytes.
func newSecretKeys(random []byte) *secretKeys {
	k := &secretKeys{}
	k.init(random[:32], binary.LittleEndian.Uint64(random[32:40]))
	return k
}
