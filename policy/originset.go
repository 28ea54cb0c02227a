package policy

import "hash/maphash"

// originSet is the set of a policy's exact origins, held as indexes into
// its list of origins (compiledPolicy.originList, which holds the strings
// once for the configuration, Explain and this set).
//
// A Go map of the 50,000 origins of a configuration at the documented caps
// took 1.8 MiB of string headers and buckets that the collector scanned on
// every cycle; this table holds 4 bytes per slot and no pointer, and is at
// most half full, so that a look-up probes 1.5 slots on average when the
// origin is listed and 2.5 when it is not (linear probing), each a string
// comparison that stops at the length when it differs. Sets of up to
// smallOriginSet origins are a list searched in order, as Go's maps of up
// to 8 entries are, without hashing.
type originSet struct {
	few   []uint32 // the indexes, while there are at most smallOriginSet
	slots []uint32 // 1 + an index, 0 for an empty slot; a power of two long
	n     int
}

const smallOriginSet = 8

// originSeed hashes every set: the origins come from the configuration,
// and the set is searched for any request's Origin, so a seed of its own
// in each process keeps a request from aiming at a long probe run.
var originSeed = maphash.MakeSeed()

// reserve makes room for up to n origins without growing.
func (s *originSet) reserve(n int) {
	if n > smallOriginSet && s.slots == nil {
		s.rehash(nil, tableSize(n))
	}
}

// tableSize is the number of slots that holds n origins at most half full.
func tableSize(n int) int {
	size := 16
	for size < 2*n {
		size *= 2
	}
	return size
}

// has reports whether o is in the set; list is the list the indexes are
// into.
func (s *originSet) has(list []string, o string) bool {
	if s.slots == nil {
		for _, i := range s.few {
			if list[i] == o {
				return true
			}
		}
		return false
	}
	mask := uint64(len(s.slots) - 1)
	for h := maphash.String(originSeed, o) & mask; ; h = (h + 1) & mask {
		i := s.slots[h]
		if i == 0 {
			return false
		}
		if list[i-1] == o {
			return true
		}
	}
}

// add adds list[i], which the set does not hold.
func (s *originSet) add(list []string, i int) {
	s.n++
	if s.slots == nil && s.n <= smallOriginSet {
		s.few = append(s.few, uint32(i))
		return
	}
	if 2*s.n > len(s.slots) {
		s.rehash(list, tableSize(s.n))
	}
	s.put(list, uint32(i))
}

// rehash moves the set into a table of size slots.
func (s *originSet) rehash(list []string, size int) {
	old, few := s.slots, s.few
	s.slots, s.few = make([]uint32, size), nil
	for _, i := range few {
		s.put(list, i)
	}
	for _, i := range old {
		if i != 0 {
			s.put(list, i-1)
		}
	}
}

func (s *originSet) put(list []string, i uint32) {
	mask := uint64(len(s.slots) - 1)
	h := maphash.String(originSeed, list[i]) & mask
	for s.slots[h] != 0 {
		h = (h + 1) & mask
	}
	s.slots[h] = i + 1
}
