/* ebee_rt.c -- the ebee AOT runtime (see ebee_rt.h).
 *
 * Map and helper semantics follow Linux (kernel/bpf/arraymap.c, hashtab.c, lpm_trie.c,
 * ringbuf.c, net/core/filter.c): the same errnos for the same arguments.  Hash maps are
 * preallocated, as Linux's are by default, so a value pointer a program holds stays
 * valid memory after the element is deleted.  Single-threaded per run context: two
 * threads may run programs at once on different CPUs (cx->cpu); map updates are not
 * locked against each other (as in Linux without BPF_F_LOCK, only atomics are atomic).
 */
#define _GNU_SOURCE
#include "ebee_rt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_EXIST 2
#define BPF_F_LOCK 4
#define ETH_HLEN 14
#define NEG(e) ((uint64_t)(int64_t)-(e))
#define ROUND8(x) (((x) + 7u) & ~7u)

static uint64_t clock_ns(clockid_t id);

/* -- maps ------------------------------------------------------------------------------ */

struct helem {
    struct helem *next;              /* bucket chain / free list */
    struct helem *lprev, *lnext;     /* LRU order: head is the most recently used */
    uint32_t hash;
    uint32_t used;
    uint64_t data[];                 /* key (rounded to 8), then value(s) */
};

struct lpm_ent {
    uint32_t used, prefixlen;
    uint64_t data[];                 /* key data (rounded to 8), then value */
};

struct ebee_map {
    const struct ebee_map_def *def;
    ebee_obj *obj;
    uint32_t type, key_size, value_size, max_entries, flags, vsz8, ncpus;
    uint8_t *values;                 /* arrays: [index][cpu][vsz8] */
    /* hash and LRU hash */
    struct helem **buckets;
    uint32_t nbuckets, count;
    uint8_t *pool;
    size_t esz;
    struct helem *free;
    struct helem *lru_head, *lru_tail;
    /* LPM trie */
    uint8_t *lpm;
    size_t lsz;
    /* ring buffer: a power-of-two ring, twice mapped in Linux; here a record that
     * crosses the end is written contiguously past it and copied to the start */
    uint8_t *rb;
    uint64_t prod, cons;
    /* PROG_ARRAY */
    int *progs;
};

struct ebee_obj {
    const struct ebee_object_def *def;
    uint32_t ncpus;
    ebee_map **maps;
    uint8_t **vals;
};

static int is_percpu(uint32_t t)
{
    return t == EBEE_MAP_PERCPU_ARRAY || t == EBEE_MAP_PERCPU_HASH || t == EBEE_MAP_LRU_PERCPU_HASH;
}

static int is_hash(uint32_t t)
{
    return t == EBEE_MAP_HASH || t == EBEE_MAP_PERCPU_HASH || t == EBEE_MAP_LRU_HASH ||
           t == EBEE_MAP_LRU_PERCPU_HASH;
}

static int is_lru(uint32_t t) { return t == EBEE_MAP_LRU_HASH || t == EBEE_MAP_LRU_PERCPU_HASH; }

static uint32_t hash_bytes(const void *p, uint32_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;         /* FNV-1a */
    for (uint32_t k = 0; k < n; k++)
        h = (h ^ b[k]) * 16777619u;
    return h;
}

static ebee_map *map_new(ebee_obj *obj, const struct ebee_map_def *d)
{
    ebee_map *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->def = d;
    m->obj = obj;
    m->type = d->type;
    m->key_size = d->key_size;
    m->value_size = d->value_size;
    m->max_entries = d->max_entries;
    m->flags = d->flags;
    m->vsz8 = ROUND8(d->value_size);
    m->ncpus = is_percpu(d->type) ? obj->ncpus : 1;
    switch (d->type) {
    case EBEE_MAP_ARRAY:
    case EBEE_MAP_PERCPU_ARRAY:
        m->values = calloc((size_t)m->max_entries * m->ncpus, m->vsz8 ? m->vsz8 : 8);
        if (!m->values)
            goto fail;
        if (d->init && m->max_entries)
            memcpy(m->values, d->init, d->init_len < m->value_size ? d->init_len : m->value_size);
        break;
    case EBEE_MAP_HASH:
    case EBEE_MAP_PERCPU_HASH:
    case EBEE_MAP_LRU_HASH:
    case EBEE_MAP_LRU_PERCPU_HASH: {
        uint32_t nb = 1;
        while (nb < m->max_entries && nb < (1u << 30))
            nb <<= 1;
        m->nbuckets = nb;
        m->buckets = calloc(nb, sizeof(*m->buckets));
        m->esz = sizeof(struct helem) + ROUND8(m->key_size) + (size_t)m->vsz8 * m->ncpus;
        m->pool = calloc(m->max_entries ? m->max_entries : 1, m->esz);
        if (!m->buckets || !m->pool)
            goto fail;
        for (uint32_t k = m->max_entries; k-- > 0;) {
            struct helem *e = (struct helem *)(m->pool + k * m->esz);
            e->next = m->free;
            m->free = e;
        }
        break;
    }
    case EBEE_MAP_LPM_TRIE:
        m->lsz = sizeof(struct lpm_ent) + ROUND8(m->key_size - 4) + m->vsz8;
        m->lpm = calloc(m->max_entries ? m->max_entries : 1, m->lsz);
        if (!m->lpm)
            goto fail;
        break;
    case EBEE_MAP_RINGBUF:
        m->rb = calloc(2, m->max_entries);
        if (!m->rb)
            goto fail;
        break;
    case EBEE_MAP_PROG_ARRAY:
        m->progs = malloc(sizeof(int) * (m->max_entries ? m->max_entries : 1));
        if (!m->progs)
            goto fail;
        for (uint32_t k = 0; k < m->max_entries; k++)
            m->progs[k] = -1;
        /* the object's initial slots (a .maps initializer): one int32 program index each */
        for (uint32_t k = 0; d->init && k < m->max_entries && 4 * (k + 1) <= d->init_len; k++) {
            int32_t v;
            memcpy(&v, d->init + 4 * k, 4);
            m->progs[k] = v < (int32_t)obj->def->nprogs ? v : -1;
        }
        break;
    default:
        goto fail;
    }
    return m;
fail:
    free(m->values);
    free(m->buckets);
    free(m->pool);
    free(m->lpm);
    free(m->rb);
    free(m->progs);
    free(m);
    return NULL;
}

static void map_free(ebee_map *m)
{
    if (!m)
        return;
    free(m->values);
    free(m->buckets);
    free(m->pool);
    free(m->lpm);
    free(m->rb);
    free(m->progs);
    free(m);
}

ebee_obj *ebee_obj_new(const struct ebee_object_def *def, uint32_t ncpus)
{
    ebee_obj *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->def = def;
    o->ncpus = ncpus ? ncpus : 1;
    o->maps = calloc(def->nmaps + 1, sizeof(*o->maps));
    o->vals = calloc(def->nmaps + 1, sizeof(*o->vals));
    if (!o->maps || !o->vals) {
        ebee_obj_free(o);
        return NULL;
    }
    for (uint32_t k = 0; k < def->nmaps; k++) {
        o->maps[k] = map_new(o, &def->maps[k]);
        if (!o->maps[k]) {
            ebee_obj_free(o);
            return NULL;
        }
        if (o->maps[k]->values)
            o->vals[k] = o->maps[k]->values;
    }
    return o;
}

void ebee_obj_free(ebee_obj *o)
{
    if (!o)
        return;
    if (o->maps)
        for (uint32_t k = 0; k < o->def->nmaps; k++)
            map_free(o->maps[k]);
    free(o->maps);
    free(o->vals);
    free(o);
}

ebee_map *ebee_obj_map(ebee_obj *o, const char *name)
{
    for (uint32_t k = 0; k < o->def->nmaps; k++)
        if (strcmp(o->def->maps[k].name, name) == 0)
            return o->maps[k];
    return NULL;
}

int ebee_obj_prog(ebee_obj *o, const char *name)
{
    for (uint32_t k = 0; k < o->def->nprogs; k++)
        if (strcmp(o->def->progs[k].name, name) == 0)
            return (int)k;
    return -1;
}

uint32_t ebee_obj_ncpus(const ebee_obj *o) { return o->ncpus; }
uint32_t ebee_map_type(const ebee_map *m) { return m->type; }
uint32_t ebee_map_key_size(const ebee_map *m) { return m->key_size; }
uint32_t ebee_map_value_size(const ebee_map *m) { return m->value_size; }
uint32_t ebee_map_max_entries(const ebee_map *m) { return m->max_entries; }

/* hash tables */

static void *helem_key(struct helem *e) { return e->data; }

static uint8_t *helem_val(ebee_map *m, struct helem *e)
{
    return (uint8_t *)e->data + ROUND8(m->key_size);
}

static struct helem *h_find(ebee_map *m, const void *key, uint32_t h)
{
    for (struct helem *e = m->buckets[h & (m->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && memcmp(helem_key(e), key, m->key_size) == 0)
            return e;
    return NULL;
}

static void lru_unlink(ebee_map *m, struct helem *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        m->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        m->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push(ebee_map *m, struct helem *e)
{
    e->lprev = NULL;
    e->lnext = m->lru_head;
    if (m->lru_head)
        m->lru_head->lprev = e;
    m->lru_head = e;
    if (!m->lru_tail)
        m->lru_tail = e;
}

static void h_unlink(ebee_map *m, struct helem *e)
{
    struct helem **pp = &m->buckets[e->hash & (m->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    if (is_lru(m->type))
        lru_unlink(m, e);
    e->used = 0;
    e->next = m->free;
    m->free = e;
    m->count--;
}

static struct helem *h_lookup(ebee_map *m, const void *key)
{
    struct helem *e = h_find(m, key, hash_bytes(key, m->key_size));
    if (e && is_lru(m->type) && m->lru_head != e) {   /* Linux marks it referenced */
        lru_unlink(m, e);
        lru_push(m, e);
    }
    return e;
}

/* value: one value (bpf side, cpu >= 0) or ncpus values (user side, cpu < 0) */
static int h_update(ebee_map *m, const void *key, const void *value, uint64_t flags, int cpu)
{
    if (is_lru(m->type) ? flags > BPF_EXIST : (flags & ~(uint64_t)BPF_F_LOCK) > BPF_EXIST)
        return -EINVAL;
    if (flags & BPF_F_LOCK)       /* no value of these maps holds a bpf_spin_lock */
        return -EINVAL;
    uint32_t h = hash_bytes(key, m->key_size);
    struct helem *e = h_find(m, key, h);
    if (e && (flags & 3) == BPF_NOEXIST)
        return -EEXIST;
    if (!e && (flags & 3) == BPF_EXIST)
        return -ENOENT;
    if (!e) {
        if (!m->free) {
            if (!is_lru(m->type) || !m->lru_tail)
                return -E2BIG;
            h_unlink(m, m->lru_tail);
        }
        e = m->free;
        m->free = e->next;
        memset(e, 0, m->esz);
        e->hash = h;
        e->used = 1;
        memcpy(helem_key(e), key, m->key_size);
        uint32_t b = h & (m->nbuckets - 1);
        e->next = m->buckets[b];
        m->buckets[b] = e;
        m->count++;
    }
    if (is_lru(m->type) && m->lru_head != e) {
        if (e->lprev || e->lnext || m->lru_head == e)
            lru_unlink(m, e);
        lru_push(m, e);
    }
    uint8_t *v = helem_val(m, e);
    if (cpu >= 0) {
        memcpy(v + (size_t)(m->ncpus > 1 ? (uint32_t)cpu : 0) * m->vsz8, value, m->value_size);
    } else {
        for (uint32_t c = 0; c < m->ncpus; c++)
            memcpy(v + (size_t)c * m->vsz8, (const uint8_t *)value + (size_t)c * m->vsz8,
                   m->value_size);
    }
    return 0;
}

static int h_delete(ebee_map *m, const void *key)
{
    struct helem *e = h_find(m, key, hash_bytes(key, m->key_size));
    if (!e)
        return -ENOENT;
    h_unlink(m, e);
    return 0;
}

/* LPM trie: longest-prefix match over a table (the kernel's trie gives the same
 * answers; only its iteration order differs) */

static uint8_t *lpm_ent(ebee_map *m, uint32_t k) { return m->lpm + (size_t)k * m->lsz; }

static int prefix_match(const uint8_t *a, const uint8_t *b, uint32_t bits)
{
    uint32_t full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full))
        return 0;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((a[full] ^ b[full]) & mask)
            return 0;
    }
    return 1;
}

static struct lpm_ent *lpm_exact(ebee_map *m, const uint8_t *key)
{
    uint32_t plen;
    memcpy(&plen, key, 4);
    for (uint32_t k = 0; k < m->max_entries; k++) {
        struct lpm_ent *e = (struct lpm_ent *)lpm_ent(m, k);
        if (e->used && e->prefixlen == plen && prefix_match((uint8_t *)e->data, key + 4, plen))
            return e;
    }
    return NULL;
}

static struct lpm_ent *lpm_longest(ebee_map *m, const uint8_t *key)
{
    uint32_t plen, ds = m->key_size - 4;
    memcpy(&plen, key, 4);
    if (plen > ds * 8)
        plen = ds * 8;
    struct lpm_ent *best = NULL;
    for (uint32_t k = 0; k < m->max_entries; k++) {
        struct lpm_ent *e = (struct lpm_ent *)lpm_ent(m, k);
        if (e->used && e->prefixlen <= plen && (!best || e->prefixlen > best->prefixlen) &&
            prefix_match((uint8_t *)e->data, key + 4, e->prefixlen))
            best = e;
    }
    return best;
}

static uint8_t *lpm_val(ebee_map *m, struct lpm_ent *e)
{
    return (uint8_t *)e->data + ROUND8(m->key_size - 4);
}

static int lpm_update(ebee_map *m, const uint8_t *key, const void *value, uint64_t flags)
{
    uint32_t plen, ds = m->key_size - 4;
    if (flags > BPF_EXIST)
        return -EINVAL;
    memcpy(&plen, key, 4);
    if (plen > ds * 8)
        return -EINVAL;
    struct lpm_ent *e = lpm_exact(m, key);
    if (e && flags == BPF_NOEXIST)
        return -EEXIST;
    if (!e && flags == BPF_EXIST)
        return -ENOENT;
    if (!e) {
        for (uint32_t k = 0; k < m->max_entries && !e; k++)
            if (!((struct lpm_ent *)lpm_ent(m, k))->used)
                e = (struct lpm_ent *)lpm_ent(m, k);
        if (!e)
            return -ENOSPC;
        e->used = 1;
        e->prefixlen = plen;
        m->count++;
    }
    memcpy(e->data, key + 4, ds);
    memcpy(lpm_val(m, e), value, m->value_size);
    return 0;
}

/* user-side API */

int ebee_map_lookup(ebee_map *m, const void *key, void *value)
{
    switch (m->type) {
    case EBEE_MAP_ARRAY:
    case EBEE_MAP_PERCPU_ARRAY: {
        uint32_t idx;
        memcpy(&idx, key, 4);
        if (idx >= m->max_entries)
            return -ENOENT;
        for (uint32_t c = 0; c < m->ncpus; c++)
            memcpy((uint8_t *)value + (size_t)c * m->vsz8,
                   m->values + ((size_t)idx * m->ncpus + c) * m->vsz8, m->ncpus > 1 ? m->vsz8 : m->value_size);
        return 0;
    }
    case EBEE_MAP_LPM_TRIE: {
        struct lpm_ent *e = lpm_longest(m, key);
        if (!e)
            return -ENOENT;
        memcpy(value, lpm_val(m, e), m->value_size);
        return 0;
    }
    case EBEE_MAP_PROG_ARRAY: {
        uint32_t idx;
        memcpy(&idx, key, 4);
        if (idx >= m->max_entries || m->progs[idx] < 0)
            return -ENOENT;
        memcpy(value, &m->progs[idx], 4);
        return 0;
    }
    default:
        if (is_hash(m->type)) {
            struct helem *e = h_find(m, key, hash_bytes(key, m->key_size));
            if (!e)
                return -ENOENT;
            memcpy(value, helem_val(m, e), m->ncpus > 1 ? (size_t)m->vsz8 * m->ncpus : m->value_size);
            return 0;
        }
        return -EOPNOTSUPP;
    }
}

int ebee_map_update(ebee_map *m, const void *key, const void *value, uint64_t flags)
{
    switch (m->type) {
    case EBEE_MAP_ARRAY:
    case EBEE_MAP_PERCPU_ARRAY: {
        uint32_t idx;
        if ((flags & ~(uint64_t)BPF_F_LOCK) > BPF_EXIST || (flags & BPF_F_LOCK))
            return -EINVAL;
        memcpy(&idx, key, 4);
        if (idx >= m->max_entries)
            return -E2BIG;
        if (flags & BPF_NOEXIST)
            return -EEXIST;
        for (uint32_t c = 0; c < m->ncpus; c++)
            memcpy(m->values + ((size_t)idx * m->ncpus + c) * m->vsz8,
                   (const uint8_t *)value + (size_t)c * m->vsz8, m->value_size);
        return 0;
    }
    case EBEE_MAP_LPM_TRIE:
        return lpm_update(m, key, value, flags);
    case EBEE_MAP_PROG_ARRAY: {
        uint32_t idx;
        int32_t prog;
        memcpy(&idx, key, 4);
        memcpy(&prog, value, 4);
        return ebee_prog_array_set(m, idx, prog);
    }
    default:
        if (is_hash(m->type))
            return h_update(m, key, value, flags, -1);
        return -EOPNOTSUPP;
    }
}

int ebee_map_delete(ebee_map *m, const void *key)
{
    if (is_hash(m->type))
        return h_delete(m, key);
    if (m->type == EBEE_MAP_LPM_TRIE) {
        struct lpm_ent *e = lpm_exact(m, key);
        uint32_t plen;
        memcpy(&plen, key, 4);
        if (plen > (m->key_size - 4) * 8)
            return -EINVAL;
        if (!e)
            return -ENOENT;
        e->used = 0;
        m->count--;
        return 0;
    }
    if (m->type == EBEE_MAP_PROG_ARRAY) {
        uint32_t idx;
        memcpy(&idx, key, 4);
        if (idx >= m->max_entries)
            return -E2BIG;
        if (m->progs[idx] < 0)
            return -ENOENT;
        m->progs[idx] = -1;
        return 0;
    }
    return -EINVAL;      /* arrays: elements cannot be deleted */
}

int ebee_map_next_key(ebee_map *m, const void *key, void *next)
{
    if (m->type == EBEE_MAP_ARRAY || m->type == EBEE_MAP_PERCPU_ARRAY ||
        m->type == EBEE_MAP_PROG_ARRAY) {
        uint32_t idx = 0, n;
        if (key)
            memcpy(&idx, key, 4);
        if (!key || idx >= m->max_entries) {
            if (!m->max_entries)
                return -ENOENT;
            n = 0;
        } else {
            if (idx + 1 >= m->max_entries)
                return -ENOENT;
            n = idx + 1;
        }
        memcpy(next, &n, 4);
        return 0;
    }
    if (is_hash(m->type)) {
        uint32_t b = 0;
        struct helem *e = key ? h_find(m, key, hash_bytes(key, m->key_size)) : NULL;
        if (e) {
            if (e->next) {
                memcpy(next, helem_key(e->next), m->key_size);
                return 0;
            }
            b = (e->hash & (m->nbuckets - 1)) + 1;
        }
        for (; b < m->nbuckets; b++)
            if (m->buckets[b]) {
                memcpy(next, helem_key(m->buckets[b]), m->key_size);
                return 0;
            }
        return -ENOENT;
    }
    if (m->type == EBEE_MAP_LPM_TRIE) {
        uint32_t k = 0;
        if (key) {
            struct lpm_ent *e = lpm_exact(m, key);
            if (e)
                k = (uint32_t)(((uint8_t *)e - m->lpm) / m->lsz) + 1;
        }
        for (; k < m->max_entries; k++) {
            struct lpm_ent *e = (struct lpm_ent *)lpm_ent(m, k);
            if (e->used) {
                memcpy(next, &e->prefixlen, 4);
                memcpy((uint8_t *)next + 4, e->data, m->key_size - 4);
                return 0;
            }
        }
        return -ENOENT;
    }
    return -EINVAL;
}

int ebee_prog_array_set(ebee_map *m, uint32_t idx, int prog)
{
    if (m->type != EBEE_MAP_PROG_ARRAY)
        return -EINVAL;
    if (idx >= m->max_entries)
        return -E2BIG;
    if (prog >= (int)m->obj->def->nprogs)
        return -EBADF;
    m->progs[idx] = prog < 0 ? -1 : prog;
    return 0;
}

/* -- ring buffer -------------------------------------------------------------------------- */

#define RB_BUSY (1u << 31)
#define RB_DISCARD (1u << 30)
#define RB_HDR 8

static void *rb_reserve(ebee_map *m, uint64_t size)
{
    uint64_t mask = m->max_entries - 1;
    if (size > m->max_entries - RB_HDR || size > 0x0fffffffu)
        return NULL;
    uint64_t total = ROUND8(size + RB_HDR);
    if (m->prod - m->cons + total > m->max_entries)
        return NULL;
    uint8_t *hdr = m->rb + (m->prod & mask);
    uint32_t len = (uint32_t)size | RB_BUSY, pgoff = 0;
    memcpy(hdr, &len, 4);
    memcpy(hdr + 4, &pgoff, 4);
    m->prod += total;
    return hdr + RB_HDR;
}

static ebee_map *rb_of(ebee_cx *cx, uint8_t *sample)
{
    /* the record's map: the one whose data area holds it */
    for (uint32_t k = 0; k < cx->obj->def->nmaps; k++) {
        ebee_map *m = cx->maps[k];
        if (m->type == EBEE_MAP_RINGBUF && sample >= m->rb && sample < m->rb + 2 * (size_t)m->max_entries)
            return m;
    }
    return NULL;
}

static void rb_commit(ebee_cx *cx, uint64_t sample, int discard)
{
    uint8_t *s = (uint8_t *)(uintptr_t)sample;
    ebee_map *m = rb_of(cx, s);
    if (!m)
        return;
    uint8_t *hdr = s - RB_HDR;
    uint32_t len;
    memcpy(&len, hdr, 4);
    len &= ~RB_BUSY;
    uint64_t off = (uint64_t)(hdr - m->rb), end = off + RB_HDR + len;
    if (end > m->max_entries)          /* the part past the end belongs at the start */
        memcpy(m->rb, m->rb + m->max_entries, end - m->max_entries);
    if (discard)
        len |= RB_DISCARD;
    memcpy(hdr, &len, 4);
}

int ebee_ringbuf_consume(ebee_map *m, void (*cb)(void *, const void *, uint32_t), void *arg)
{
    int n = 0;
    uint64_t mask = m->max_entries - 1;
    while (m->cons < m->prod) {
        uint8_t *hdr = m->rb + (m->cons & mask);
        uint32_t len;
        memcpy(&len, hdr, 4);
        if (len & RB_BUSY)
            break;
        uint32_t size = len & ~(RB_BUSY | RB_DISCARD);
        if (!(len & RB_DISCARD)) {
            if (cb)
                cb(arg, hdr + RB_HDR, size);
            n++;
        }
        m->cons += ROUND8(size + RB_HDR);
    }
    return n;
}

/* -- runs ---------------------------------------------------------------------------------- */

static void (*printk_cb)(void *, const char *);
static void *printk_arg;
static uint64_t seed_state = 0x853c49e6748fea9bULL;

void ebee_set_printk(void (*cb)(void *, const char *), void *arg)
{
    printk_cb = cb;
    printk_arg = arg;
}

void ebee_set_seed(uint64_t seed) { seed_state = seed; }

static void cx_init(ebee_cx *cx, ebee_obj *o, uint32_t cpu)
{
    memset(cx, 0, sizeof(*cx));
    cx->obj = o;
    cx->maps = o->maps;
    cx->vals = o->vals;
    cx->cpu = cpu < o->ncpus ? cpu : 0;
    cx->budget = 1000000;
}

static void finish(ebee_cx *cx, uint64_t r0, struct ebee_result *res)
{
    res->retval = r0;
    res->status = cx->status;
    res->fault_pc = cx->fault_pc;
    res->fault_msg = cx->fault_msg;
    res->data_len = 0;
}

int ebee_run_mem(ebee_obj *o, int prog, uint32_t cpu, void *mem, uint64_t len,
                 struct ebee_result *res)
{
    ebee_cx cx;
    if (prog < 0 || (uint32_t)prog >= o->def->nprogs)
        return -EINVAL;
    cx_init(&cx, o, cpu);
    uint64_t r1 = mem && len ? (uint64_t)(uintptr_t)mem : 0;
    cx.mem_lo = r1;
    cx.mem_hi = r1 ? r1 + len : 0;
    uint64_t r0 = o->def->progs[prog].fn(&cx, r1, mem ? len : 0, 0, 0, 0);
    finish(&cx, r0, res);
    return 0;
}

int ebee_run_ctx(ebee_obj *o, int prog, uint32_t cpu, void *ctx, struct ebee_result *res)
{
    ebee_cx cx;
    if (prog < 0 || (uint32_t)prog >= o->def->nprogs)
        return -EINVAL;
    cx_init(&cx, o, cpu);
    uint64_t r0 = o->def->progs[prog].fn(&cx, (uint64_t)(uintptr_t)ctx, 0, 0, 0, 0);
    finish(&cx, r0, res);
    return 0;
}

#define PAGE 4096
#define XDP_MAX_DATA (PAGE - EBEE_XDP_PACKET_HEADROOM - EBEE_SKB_TAILROOM)

static uint64_t get64(const uint8_t *p, uint32_t off) { uint64_t v; memcpy(&v, p + off, 8); return v; }
static void put64(uint8_t *p, uint32_t off, uint64_t v) { memcpy(p + off, &v, 8); }
static void put32(uint8_t *p, uint32_t off, uint32_t v) { memcpy(p + off, &v, 4); }

int ebee_run_xdp(ebee_obj *o, int prog, uint32_t cpu, const void *data, uint32_t len,
                 void *out, uint32_t cap, struct ebee_result *res)
{
    return ebee_run_xdp_repeat(o, prog, cpu, data, len, out, cap, 1, res, NULL);
}

int ebee_run_xdp_repeat(ebee_obj *o, int prog, uint32_t cpu, const void *data, uint32_t len,
                        void *out, uint32_t cap, uint32_t repeat, struct ebee_result *res,
                        uint64_t *ns)
{
    ebee_cx cx;
    _Alignas(64) uint8_t frame[PAGE];
    _Alignas(8) uint8_t buff[EBEE_XDP_BUFF_SIZE];
    _Alignas(8) uint8_t rxq[EBEE_XDP_RXQ_INFO_SIZE];
    _Alignas(8) static uint8_t dev[EBEE_NET_DEVICE_SIZE];
    if (prog < 0 || (uint32_t)prog >= o->def->nprogs)
        return -EINVAL;
    if (len < ETH_HLEN || len > XDP_MAX_DATA)
        return -EINVAL;
    memset(frame, 0, sizeof(frame));
    memset(buff, 0, sizeof(buff));
    memset(rxq, 0, sizeof(rxq));
    put32(dev, EBEE_NET_DEVICE_IFINDEX, EBEE_LOOPBACK_IFINDEX);
    put32(dev, EBEE_NET_DEVICE_MTU, EBEE_LOOPBACK_MTU);
    memcpy(frame + EBEE_XDP_PACKET_HEADROOM, data, len);
    uint64_t start = (uint64_t)(uintptr_t)frame, d = start + EBEE_XDP_PACKET_HEADROOM;
    put64(buff, EBEE_XDP_BUFF_DATA, d);
    put64(buff, EBEE_XDP_BUFF_DATA_META, d);
    put64(buff, EBEE_XDP_BUFF_DATA_END, d + len);
    put64(buff, EBEE_XDP_BUFF_DATA_HARD_START, start);
    put64(buff, EBEE_XDP_BUFF_RXQ, (uint64_t)(uintptr_t)rxq);
    put32(buff, EBEE_XDP_BUFF_FRAME_SZ, PAGE);
    put64(rxq, EBEE_XDP_RXQ_INFO_DEV, (uint64_t)(uintptr_t)dev);
    cx_init(&cx, o, cpu);
    cx.xdp = buff;
    cx.ctx_lo = (uint64_t)(uintptr_t)buff;
    cx.ctx_hi = cx.ctx_lo + sizeof(buff);
    /* as BPF_PROG_TEST_RUN with repeat: the same buffer, run after run; timed on the
     * thread's CPU clock, as the kernel's bpf_test_timer stops while it reschedules */
    ebee_fn fn = o->def->progs[prog].fn;
    uint64_t t0 = ns ? clock_ns(CLOCK_THREAD_CPUTIME_ID) : 0, r0 = 0;
    for (uint32_t k = 0; k < (repeat ? repeat : 1); k++) {
        cx.tail_calls = 0;
        r0 = fn(&cx, (uint64_t)(uintptr_t)buff, 0, 0, 0, 0);
    }
    if (ns)
        *ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    finish(&cx, r0 & 0xffffffffu, res);
    uint64_t meta = get64(buff, EBEE_XDP_BUFF_DATA_META), end = get64(buff, EBEE_XDP_BUFF_DATA_END);
    uint64_t n = end - meta;
    if (n > cap)
        n = cap;
    if (out)
        memcpy(out, (void *)(uintptr_t)meta, n);
    res->data_len = (uint32_t)n;
    return 0;
}

/* -- what translated code calls --------------------------------------------------------------- */

uint64_t ebee_rt_fault(ebee_cx *cx, int status, uint64_t pc, uint64_t addr, const char *msg)
{
    if (!cx->status) {
        cx->status = status;
        cx->fault_pc = pc;
        cx->fault_addr = addr;
        cx->fault_msg = msg;
    }
    return 0;
}

static int inside(uint64_t lo, uint64_t hi, uint64_t a, uint64_t size)
{
    return lo < hi && a >= lo && a - lo <= hi - lo && size <= hi - a;
}

int ebee_rt_check(ebee_cx *cx, uint64_t a, uint64_t size, int write, uint64_t pc)
{
    if (inside(cx->mem_lo, cx->mem_hi, a, size) || inside(cx->ctx_lo, cx->ctx_hi, a, size))
        return 1;
    for (uint32_t k = 0; k <= cx->depth && k < EBEE_MAX_FRAMES; k++)
        if (inside(cx->frame_lo[k], cx->frame_hi[k], a, size))
            return 1;
    ebee_rt_fault(cx, EBEE_FAULT_MEM, pc, a, write ? "invalid memory write" : "invalid memory read");
    return 0;
}

ebee_fn ebee_rt_tail_target(ebee_cx *cx, uint64_t map, uint64_t index)
{
    ebee_map *m = (ebee_map *)(uintptr_t)map;
    uint32_t idx = (uint32_t)index;
    if (cx->tail_calls >= EBEE_MAX_TAIL_CALL_CNT || m->type != EBEE_MAP_PROG_ARRAY ||
        idx >= m->max_entries || m->progs[idx] < 0)
        return NULL;
    cx->tail_calls++;
    return m->obj->def->progs[m->progs[idx]].fn;
}

uint64_t ebee_rt_map_value(ebee_cx *cx, uint32_t map, uint32_t off)
{
    return (uint64_t)(uintptr_t)cx->vals[map] + off;
}

uint64_t ebee_rt_helper(ebee_cx *cx, uint64_t id, uint64_t r1, uint64_t r2, uint64_t r3,
                        uint64_t r4, uint64_t r5)
{
    switch (id) {
#define EBEE_HELPER_CASE(hid, name) case hid: return ebee_h_##name(cx, r1, r2, r3, r4, r5);
        EBEE_HELPERS(EBEE_HELPER_CASE)
#undef EBEE_HELPER_CASE
    default:
        return ebee_rt_fault(cx, EBEE_FAULT_HELPER, 0, id,
                             "callx: neither a function of this program nor a helper id");
    }
}

/* -- helpers ----------------------------------------------------------------------------------- */

#define MAP(r) ((ebee_map *)(uintptr_t)(r))
#define PTR(r) ((void *)(uintptr_t)(r))
#define U64(p) ((uint64_t)(uintptr_t)(p))

uint64_t ebee_h_map_lookup_elem(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4,
                                uint64_t r5)
{
    ebee_map *m = MAP(r1);
    (void)r3; (void)r4; (void)r5;
    switch (m->type) {
    case EBEE_MAP_ARRAY: {
        uint32_t idx;
        memcpy(&idx, PTR(r2), 4);
        return idx < m->max_entries ? U64(m->values + (size_t)idx * m->vsz8) : 0;
    }
    case EBEE_MAP_PERCPU_ARRAY: {
        uint32_t idx;
        memcpy(&idx, PTR(r2), 4);
        return idx < m->max_entries ? U64(m->values + ((size_t)idx * m->ncpus + cx->cpu) * m->vsz8) : 0;
    }
    case EBEE_MAP_LPM_TRIE: {
        struct lpm_ent *e = lpm_longest(m, PTR(r2));
        return e ? U64(lpm_val(m, e)) : 0;
    }
    default:
        if (is_hash(m->type)) {
            struct helem *e = h_lookup(m, PTR(r2));
            if (!e)
                return 0;
            return U64(helem_val(m, e) + (m->ncpus > 1 ? (size_t)cx->cpu * m->vsz8 : 0));
        }
        return 0;
    }
}

uint64_t ebee_h_map_update_elem(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4,
                                uint64_t r5)
{
    ebee_map *m = MAP(r1);
    (void)r5;
    switch (m->type) {
    case EBEE_MAP_ARRAY:
    case EBEE_MAP_PERCPU_ARRAY: {
        uint32_t idx;
        if ((r4 & ~(uint64_t)BPF_F_LOCK) > BPF_EXIST || (r4 & BPF_F_LOCK))
            return NEG(EINVAL);
        memcpy(&idx, PTR(r2), 4);
        if (idx >= m->max_entries)
            return NEG(E2BIG);
        if (r4 & BPF_NOEXIST)
            return NEG(EEXIST);
        memcpy(m->values + ((size_t)idx * m->ncpus + (m->ncpus > 1 ? cx->cpu : 0)) * m->vsz8, PTR(r3),
               m->value_size);
        return 0;
    }
    case EBEE_MAP_LPM_TRIE:
        return (uint64_t)(int64_t)lpm_update(m, PTR(r2), PTR(r3), r4);
    default:
        if (is_hash(m->type))
            return (uint64_t)(int64_t)h_update(m, PTR(r2), PTR(r3), r4, (int)cx->cpu);
        return NEG(EINVAL);
    }
}

uint64_t ebee_h_map_delete_elem(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4,
                                uint64_t r5)
{
    (void)cx; (void)r3; (void)r4; (void)r5;
    ebee_map *m = MAP(r1);
    if (m->type == EBEE_MAP_PROG_ARRAY)
        return NEG(EINVAL);
    return (uint64_t)(int64_t)ebee_map_delete(m, PTR(r2));
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define NOARGS (void)cx; (void)r1; (void)r2; (void)r3; (void)r4; (void)r5

uint64_t ebee_h_ktime_get_ns(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    NOARGS;
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t ebee_h_ktime_get_boot_ns(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    NOARGS;
    return clock_ns(CLOCK_BOOTTIME);
}

uint64_t ebee_h_ktime_get_coarse_ns(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    NOARGS;
    return clock_ns(CLOCK_MONOTONIC_COARSE);
}

uint64_t ebee_h_ktime_get_tai_ns(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    NOARGS;
    return clock_ns(CLOCK_TAI);
}

uint64_t ebee_h_get_prandom_u32(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    NOARGS;
    /* splitmix64: seeded, reproducible, not cryptographic (neither is prandom) */
    uint64_t z = (seed_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (uint32_t)(z ^ (z >> 31));
}

uint64_t ebee_h_get_smp_processor_id(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    NOARGS;
    return cx->cpu;
}

uint64_t ebee_h_get_numa_node_id(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    NOARGS;
    return 0;
}

/* bpf_trace_printk: the kernel's subset of printf (bpf_bprintf_prepare), at most three
 * arguments; the line goes to the printk callback, the return is its length. */
uint64_t ebee_h_trace_printk(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx;
    const char *fmt = PTR(r1);
    uint32_t n = (uint32_t)r2;
    uint64_t args[3] = {r3, r4, r5};
    char out[1024];
    size_t o = 0;
    int used = 0;
    if (n == 0 || fmt[n - 1] != 0)
        return NEG(EINVAL);
    for (uint32_t k = 0; fmt[k] && o < sizeof(out) - 1; k++) {
        if (fmt[k] != '%') {
            out[o++] = fmt[k];
            continue;
        }
        if (fmt[k + 1] == '%') {
            out[o++] = '%';
            k++;
            continue;
        }
        if (used >= 3)
            return NEG(EINVAL);
        uint32_t j = k + 1, lng = 0;
        char spec[8];
        while (fmt[j] == 'l' && lng < 2) {
            lng++;
            j++;
        }
        char c = fmt[j];
        uint64_t v = args[used++];
        int w;
        size_t room = sizeof(out) - o;
        switch (c) {
        case 'd': case 'i':
            w = snprintf(out + o, room, "%lld", lng ? (long long)(int64_t)v : (long long)(int32_t)v);
            break;
        case 'u':
            w = snprintf(out + o, room, "%llu", lng ? (unsigned long long)v : (unsigned long long)(uint32_t)v);
            break;
        case 'x': case 'X':
            snprintf(spec, sizeof(spec), "%%ll%c", c);
            w = snprintf(out + o, room, spec, lng ? (unsigned long long)v : (unsigned long long)(uint32_t)v);
            break;
        case 'c':
            w = snprintf(out + o, room, "%c", (char)v);
            break;
        case 'p':
            if (lng)
                return NEG(EINVAL);
            w = snprintf(out + o, room, "0x%016llx", (unsigned long long)v);
            break;
        case 's':
            if (lng)
                return NEG(EINVAL);
            w = snprintf(out + o, room, "%s", v ? (const char *)PTR(v) : "(null)");
            break;
        default:
            return NEG(EINVAL);
        }
        if (w < 0)
            return NEG(EINVAL);
        o += (size_t)w < room ? (size_t)w : room - 1;
        k = j;
    }
    out[o] = 0;
    if (printk_cb)
        printk_cb(printk_arg, out);
    else
        fprintf(stderr, "%s\n", out);
    return o;
}

/* bpf_csum_diff: Linux 6.12+, the 16-bit folded result on every architecture */
static uint64_t csum_partial(const uint8_t *p, uint32_t n, uint32_t seed)
{
    uint64_t s = seed;
    for (uint32_t k = 0; k + 4 <= n; k += 4) {
        uint32_t w;
        memcpy(&w, p + k, 4);
        s += w;
    }
    while (s >> 32)
        s = (s & 0xffffffffu) + (s >> 32);
    return s;
}

uint64_t ebee_h_csum_diff(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx;
    uint32_t fs = (uint32_t)r2, ts = (uint32_t)r4, seed = (uint32_t)r5;
    uint64_t ret;
    if (((fs | ts) & 3) || (uint64_t)fs + ts > EBEE_CSUM_DIFF_MAX)
        return NEG(EINVAL);
    if (!fs) {
        ret = csum_partial(PTR(r3), ts, seed);
    } else if (!ts) {
        ret = ~csum_partial(PTR(r1), fs, ~seed) & 0xffffffffu;
    } else {
        uint64_t a = csum_partial(PTR(r3), ts, seed), b = ~csum_partial(PTR(r1), fs, 0) & 0xffffffffu;
        uint64_t s = a + b;
        ret = (s & 0xffffffffu) + (s >> 32);
    }
    ret = (ret & 0xffff) + (ret >> 16);
    return (ret & 0xffff) + (ret >> 16);
}

/* XDP (net/core/filter.c) on the run's xdp_buff */

#define XB(cx) ((uint8_t *)(cx)->xdp)

uint64_t ebee_h_xdp_adjust_head(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)r3; (void)r4; (void)r5;
    uint8_t *x = PTR(r1);
    int64_t off = (int32_t)r2;
    uint64_t data = get64(x, EBEE_XDP_BUFF_DATA), meta = get64(x, EBEE_XDP_BUFF_DATA_META);
    uint64_t end = get64(x, EBEE_XDP_BUFF_DATA_END), hard = get64(x, EBEE_XDP_BUFF_DATA_HARD_START);
    (void)cx;
    uint64_t metalen = meta > data ? 0 : data - meta;
    uint64_t nd = data + (uint64_t)off;
    if (nd < hard + EBEE_XDP_FRAME_SIZE + metalen || nd > end - ETH_HLEN)
        return NEG(EINVAL);
    if (metalen)
        memmove(PTR(meta + (uint64_t)off), PTR(meta), metalen);
    put64(x, EBEE_XDP_BUFF_DATA_META, meta + (uint64_t)off);
    put64(x, EBEE_XDP_BUFF_DATA, nd);
    return 0;
}

uint64_t ebee_h_xdp_adjust_meta(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx; (void)r3; (void)r4; (void)r5;
    uint8_t *x = PTR(r1);
    uint64_t data = get64(x, EBEE_XDP_BUFF_DATA), meta = get64(x, EBEE_XDP_BUFF_DATA_META);
    uint64_t hard = get64(x, EBEE_XDP_BUFF_DATA_HARD_START);
    uint64_t nm = meta + (uint64_t)(int64_t)(int32_t)r2;
    if (meta > data)
        return NEG(524);               /* ENOTSUPP */
    if (nm < hard + EBEE_XDP_FRAME_SIZE || nm > data)
        return NEG(EINVAL);
    if (((data - nm) & 3) || data - nm > EBEE_XDP_METALEN_MAX)
        return NEG(EACCES);
    put64(x, EBEE_XDP_BUFF_DATA_META, nm);
    return 0;
}

uint64_t ebee_h_xdp_adjust_tail(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx; (void)r3; (void)r4; (void)r5;
    uint8_t *x = PTR(r1);
    uint64_t data = get64(x, EBEE_XDP_BUFF_DATA), end = get64(x, EBEE_XDP_BUFF_DATA_END);
    uint64_t hard = get64(x, EBEE_XDP_BUFF_DATA_HARD_START);
    uint32_t fsz;
    memcpy(&fsz, x + EBEE_XDP_BUFF_FRAME_SZ, 4);
    int64_t off = (int32_t)r2;
    uint64_t ne = end + (uint64_t)off;
    if (ne > hard + fsz - EBEE_SKB_TAILROOM || ne < data + ETH_HLEN)
        return NEG(EINVAL);
    if (off > 0)
        memset(PTR(end), 0, (size_t)off);
    put64(x, EBEE_XDP_BUFF_DATA_END, ne);
    return 0;
}

uint64_t ebee_h_xdp_get_buff_len(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx; (void)r2; (void)r3; (void)r4; (void)r5;
    uint8_t *x = PTR(r1);
    return get64(x, EBEE_XDP_BUFF_DATA_END) - get64(x, EBEE_XDP_BUFF_DATA);
}

static uint64_t xdp_bytes(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, int store)
{
    uint8_t *x = PTR(r1);
    uint32_t off = (uint32_t)r2;
    uint64_t data = get64(x, EBEE_XDP_BUFF_DATA), end = get64(x, EBEE_XDP_BUFF_DATA_END);
    if (off > 0xffff || r4 > 0xffff)
        return NEG(EFAULT);
    if ((uint64_t)off + r4 > end - data)
        return NEG(EINVAL);
    if (store)
        memcpy(PTR(data + off), PTR(r3), r4);
    else
        memcpy(PTR(r3), PTR(data + off), r4);
    return 0;
}

uint64_t ebee_h_xdp_load_bytes(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx; (void)r5;
    return xdp_bytes(r1, r2, r3, r4, 0);
}

uint64_t ebee_h_xdp_store_bytes(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx; (void)r5;
    return xdp_bytes(r1, r2, r3, r4, 1);
}

/* ring buffer helpers (kernel/bpf/ringbuf.c) */

#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2

uint64_t ebee_h_ringbuf_output(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)r5;
    if (r4 & ~(uint64_t)(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP))
        return NEG(EINVAL);
    void *s = rb_reserve(MAP(r1), r3);
    if (!s)
        return NEG(EAGAIN);
    memcpy(s, PTR(r2), r3);
    rb_commit(cx, U64(s), 0);
    return 0;
}

uint64_t ebee_h_ringbuf_reserve(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx; (void)r4; (void)r5;
    if (r3)
        return 0;
    return U64(rb_reserve(MAP(r1), r2));
}

uint64_t ebee_h_ringbuf_submit(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)r2; (void)r3; (void)r4; (void)r5;
    rb_commit(cx, r1, 0);
    return 0;
}

uint64_t ebee_h_ringbuf_discard(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)r2; (void)r3; (void)r4; (void)r5;
    rb_commit(cx, r1, 1);
    return 0;
}

uint64_t ebee_h_ringbuf_query(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)cx; (void)r3; (void)r4; (void)r5;
    ebee_map *m = MAP(r1);
    switch (r2) {
    case 0: return m->prod - m->cons;        /* BPF_RB_AVAIL_DATA */
    case 1: return m->max_entries;           /* BPF_RB_RING_SIZE */
    case 2: return m->cons;                  /* BPF_RB_CONS_POS */
    case 3: return m->prod;                  /* BPF_RB_PROD_POS */
    default: return 0;
    }
}

/* bpf_loop: callback_fn(index, ctx) until it returns 1 */
uint64_t ebee_h_loop(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
    (void)r5;
    uint32_t n = (uint32_t)r1;
    ebee_fn cb = (ebee_fn)(uintptr_t)r2;
    if (r4)
        return NEG(EINVAL);
    if (n > (1u << 23))
        return NEG(E2BIG);
    for (uint32_t k = 0; k < n; k++) {
        uint64_t ret = cb(cx, k, r3, 0, 0, 0);
        if (cx->status)
            return 0;
        if (ret)
            return k + 1;
    }
    return n;
}
