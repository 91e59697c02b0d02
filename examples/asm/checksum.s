; IPv4 header checksum (RFC 1071), kernel/LLVM assembly syntax.
; In:  r1 = address of the header, r2 = its length in bytes.
; Out: r0 = the one's complement of the one's complement sum; 0 means the
;      checksum field in the header is correct.
    r0 = 0
    r3 = r1
    r3 += r2                    ; r3 = end of header
loop:
    r4 = r1
    r4 += 2
    if r4 > r3 goto tail        ; fewer than two bytes left
    r5 = *(u16 *)(r1 + 0)
    r5 = be16 r5                ; header words are big-endian
    r0 += r5
    r1 += 2
    goto loop
tail:
    if r1 >= r3 goto done
    r5 = *(u8 *)(r1 + 0)        ; an odd trailing byte is padded with zero
    r5 <<= 8
    r0 += r5
done:
    r1 = r0
    call fold                   ; bpf-to-bpf call
    r0 ^= 0xffff
    exit

; fold a 64-bit sum of 16-bit words into 16 bits with end-around carry
fold:
    r0 = r1
again:
    r2 = r0
    r2 >>= 16
    if r2 == 0 goto out
    r0 &= 0xffff
    r0 += r2
    goto again
out:
    exit
