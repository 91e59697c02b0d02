; A tc classifier: drop frames shorter than 60 bytes (TC_ACT_SHOT), pass the rest (TC_ACT_OK).
; In:  r1 = the struct __sk_buff context.   Out: r0 = the tc action.
    r2 = *(u32 *)(r1 + 0)       ; skb->len
    r0 = 0                      ; TC_ACT_OK
    if r2 >= 60 goto out
    r0 = 2                      ; TC_ACT_SHOT
out:
    exit
