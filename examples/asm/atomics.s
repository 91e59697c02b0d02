; Atomic operations on a counter in memory (the lock-prefixed and fetch forms).
; In:  r1 = address of a u64 counter.
; Out: r0 = the counter afterwards, (old + 10) | 3, as read back by a
;      compare-and-exchange that does not swap.
    r2 = 10
    r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)   ; r2 = old value, counter += 10
    r3 = 3
    lock *(u64 *)(r1 + 0) |= r3                   ; counter |= 3
    r0 = r2
    r4 = 0xff
    r0 = cmpxchg_64(r1 + 0, r0, r4)               ; counter changed, so no swap: r0 = current
    exit
