package limits

// links are the list pointers embedded in an element of an lru.
type links[E any] struct {
	prev, next *E
}

// linked is a pointer to an element that carries its own links, so list moves never allocate.
type linked[E any] interface {
	*E
	link() *links[E]
}

// lru is an intrusive doubly-linked list kept in recency order: front is the most recently used, back the
// least. An element is in at most one list. Callers lock.
type lru[E any, P linked[E]] struct {
	front, back *E
}

func (l *lru[E, P]) pushFront(e *E) {
	k := P(e).link()
	k.prev, k.next = nil, l.front
	if l.front != nil {
		P(l.front).link().prev = e
	} else {
		l.back = e
	}
	l.front = e
}

func (l *lru[E, P]) remove(e *E) {
	k := P(e).link()
	if k.prev != nil {
		P(k.prev).link().next = k.next
	} else {
		l.front = k.next
	}
	if k.next != nil {
		P(k.next).link().prev = k.prev
	} else {
		l.back = k.prev
	}
	k.prev, k.next = nil, nil
}

func (l *lru[E, P]) moveToFront(e *E) {
	if l.front == e {
		return
	}
	l.remove(e)
	l.pushFront(e)
}

// prev returns the element after e toward the front (more recently used), for walks from the back.
func (l *lru[E, P]) prev(e *E) *E { return P(e).link().prev }
