/* ebee_rt.h -- the ebee AOT runtime: maps, helpers and program runs without Python.
 *
 * Programs translated by `ebee aot` (C source or native objects) call into this
 * runtime; applications use its API to open an object (which creates its maps),
 * fill maps, run a program on a packet or a memory block, and read results.
 * Written out by ebee (`ebee aot --runtime`), which fills in the generated part
 * (helper ids, context layouts) from its own tables.  C99 plus the GCC/clang
 * __atomic and __builtin_bswap builtins.
 */
#ifndef EBEE_RT_H
#define EBEE_RT_H

#include <stddef.h>
#include <stdint.h>
#ifndef EBEE_RT_FREESTANDING   /* cross-compiled programs need no C library headers */
#include <string.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*@EBEE_GENERATED@*/

typedef struct ebee_map ebee_map;
typedef struct ebee_obj ebee_obj;
typedef struct ebee_cx ebee_cx;

/* Every translated eBPF function (programs, subprograms, callbacks): r1..r5 in, r0 out. */
typedef uint64_t (*ebee_fn)(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4,
                            uint64_t r5);

struct ebee_map_def {
    const char *name;
    uint32_t type, key_size, value_size, max_entries, flags;
    const uint8_t *init;          /* element 0's initial contents (.data/.rodata), or PROG_ARRAY's
                                   * initial slots (int32 program indices, -1 empty), or NULL */
    uint32_t init_len;
};

struct ebee_prog_def {
    const char *name;
    uint32_t prog_type;
    ebee_fn fn;
};

struct ebee_object_def {
    const char *name;
    uint32_t nmaps;
    const struct ebee_map_def *maps;
    uint32_t nprogs;
    const struct ebee_prog_def *progs;
};

/* Run statuses (ebee_cx.status): what ended a run other than EXIT. */
enum {
    EBEE_OK = 0,
    EBEE_FAULT_MEM = 1,        /* checked code: an access outside every live region */
    EBEE_FAULT_STATIC = 2,     /* checked code: an invalid instruction was reached */
    EBEE_FAULT_BUDGET = 3,     /* checked code: the instruction budget ran out */
    EBEE_FAULT_DEPTH = 4,      /* checked code: too many nested calls */
    EBEE_FAULT_HELPER = 5,     /* callx to something that is neither a function nor a helper */
};

#define EBEE_MAX_FRAMES 8
#define EBEE_STACK 512

/* The state of one run (one virtual CPU).  Translated code reads maps and faults
 * through it; applications normally use the ebee_run_* functions instead. */
struct ebee_cx {
    ebee_obj *obj;
    ebee_map **maps;
    uint32_t cpu;
    uint32_t tail_calls;
    int status;
    uint64_t fault_pc, fault_addr;
    const char *fault_msg;
    /* checked code (programs that were not verified): live regions and budget */
    uint64_t mem_lo, mem_hi, ctx_lo, ctx_hi;
    uint64_t frame_lo[EBEE_MAX_FRAMES], frame_hi[EBEE_MAX_FRAMES];
    uint32_t depth;
    uint64_t steps, budget;
    void *xdp;                 /* the run's xdp_buff, for the XDP helpers */
    uint8_t **vals;            /* element 0 of each map (direct value access, lddw src=2) */
};

/* -- objects ------------------------------------------------------------------------ */
ebee_obj *ebee_obj_new(const struct ebee_object_def *def, uint32_t ncpus);
void ebee_obj_free(ebee_obj *obj);
ebee_map *ebee_obj_map(ebee_obj *obj, const char *name);   /* NULL: no such map */
int ebee_obj_prog(ebee_obj *obj, const char *name);        /* index, or -1 */
uint32_t ebee_obj_ncpus(const ebee_obj *obj);

/* -- maps (user side, the bpf() syscall's semantics; 0 or a negative errno) ----------- */
/* Per-CPU maps take and return ncpus values, each rounded up to 8 bytes, as bpf() does. */
int ebee_map_lookup(ebee_map *m, const void *key, void *value);
int ebee_map_update(ebee_map *m, const void *key, const void *value, uint64_t flags);
int ebee_map_delete(ebee_map *m, const void *key);
int ebee_map_next_key(ebee_map *m, const void *key, void *next_key);   /* key NULL: first */
uint32_t ebee_map_type(const ebee_map *m);
uint32_t ebee_map_key_size(const ebee_map *m);
uint32_t ebee_map_value_size(const ebee_map *m);
uint32_t ebee_map_max_entries(const ebee_map *m);
/* PROG_ARRAY: slot idx -> the object's program prog (-1 clears the slot). */
int ebee_prog_array_set(ebee_map *m, uint32_t idx, int prog);
/* RINGBUF: hand every committed record to cb (discarded ones are skipped); the count. */
int ebee_ringbuf_consume(ebee_map *m, void (*cb)(void *arg, const void *data, uint32_t len),
                         void *arg);

/* -- runs ----------------------------------------------------------------------------- */
struct ebee_result {
    uint64_t retval;
    int status;                /* EBEE_OK or a fault */
    uint64_t fault_pc;
    const char *fault_msg;
    uint32_t data_len;         /* bytes of data_out written (XDP) */
};

/* BPF_PROG_TEST_RUN for XDP: data at 256 bytes of headroom in a 4096-byte frame;
 * data_out gets data_meta..data_end (at most out_cap bytes). */
int ebee_run_xdp(ebee_obj *obj, int prog, uint32_t cpu, const void *data, uint32_t len,
                 void *data_out, uint32_t out_cap, struct ebee_result *res);
/* The same, run `repeat` times on the same buffer as BPF_PROG_TEST_RUN's repeat does;
 * *ns (if not NULL) gets the thread CPU time of the runs in ns; res is the last run's. */
int ebee_run_xdp_repeat(ebee_obj *obj, int prog, uint32_t cpu, const void *data, uint32_t len,
                        void *data_out, uint32_t out_cap, uint32_t repeat,
                        struct ebee_result *res, uint64_t *ns);
/* A program on a memory block: r1 = mem, r2 = len (the conformance suite's convention). */
int ebee_run_mem(ebee_obj *obj, int prog, uint32_t cpu, void *mem, uint64_t len,
                 struct ebee_result *res);
/* A program on a context of the caller's making: r1 = ctx. */
int ebee_run_ctx(ebee_obj *obj, int prog, uint32_t cpu, void *ctx, struct ebee_result *res);

/* bpf_trace_printk's lines go here (default: stderr); seeds of bpf_get_prandom_u32. */
void ebee_set_printk(void (*cb)(void *arg, const char *line), void *arg);
void ebee_set_seed(uint64_t seed);

/* -- what translated code calls -------------------------------------------------------- */
uint64_t ebee_rt_fault(ebee_cx *cx, int status, uint64_t pc, uint64_t addr, const char *msg);
int ebee_rt_check(ebee_cx *cx, uint64_t addr, uint64_t size, int write, uint64_t pc);
ebee_fn ebee_rt_tail_target(ebee_cx *cx, uint64_t map, uint64_t index);
uint64_t ebee_rt_map_value(ebee_cx *cx, uint32_t map, uint32_t off);
uint64_t ebee_rt_helper(ebee_cx *cx, uint64_t id, uint64_t r1, uint64_t r2, uint64_t r3,
                        uint64_t r4, uint64_t r5);

#define EBEE_HELPER_DECL(id, name) \
    uint64_t ebee_h_##name(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, \
                           uint64_t r5);
EBEE_HELPERS(EBEE_HELPER_DECL)
#undef EBEE_HELPER_DECL

/* Memory access of translated code: unaligned, alias-free (compiles to one move). */
static inline uint64_t ebee_ld8(uint64_t a) { uint8_t v; __builtin_memcpy(&v, (const void *)(uintptr_t)a, 1); return v; }
static inline uint64_t ebee_ld16(uint64_t a) { uint16_t v; __builtin_memcpy(&v, (const void *)(uintptr_t)a, 2); return v; }
static inline uint64_t ebee_ld32(uint64_t a) { uint32_t v; __builtin_memcpy(&v, (const void *)(uintptr_t)a, 4); return v; }
static inline uint64_t ebee_ld64(uint64_t a) { uint64_t v; __builtin_memcpy(&v, (const void *)(uintptr_t)a, 8); return v; }
static inline void ebee_st8(uint64_t a, uint64_t v) { uint8_t x = (uint8_t)v; __builtin_memcpy((void *)(uintptr_t)a, &x, 1); }
static inline void ebee_st16(uint64_t a, uint64_t v) { uint16_t x = (uint16_t)v; __builtin_memcpy((void *)(uintptr_t)a, &x, 2); }
static inline void ebee_st32(uint64_t a, uint64_t v) { uint32_t x = (uint32_t)v; __builtin_memcpy((void *)(uintptr_t)a, &x, 4); }
static inline void ebee_st64(uint64_t a, uint64_t v) { __builtin_memcpy((void *)(uintptr_t)a, &v, 8); }

#ifdef __cplusplus
}
#endif
#endif /* EBEE_RT_H */
