; Fibonacci numbers with a bounded loop and the stack.
; In:  r1 = address of a u32 n.   Out: r0 = fib(n) (mod 2^64).
    w6 = *(u32 *)(r1 + 0)
    r0 = 0                      ; fib(0)
    r1 = 1                      ; fib(1)
    *(u64 *)(r10 - 8) = r6      ; keep n in the frame
    if r6 == 0 goto out
next:
    r2 = r0
    r2 += r1
    r0 = r1
    r1 = r2
    r6 += -1
    if r6 != 0 goto next
out:
    exit
