// SPDX-License-Identifier: GPL-2.0
/* What libbpf does with bpf_map__set_value_size on an opened object: prints the map's
 * value size, the BTF of its DATASEC and its initial value after the resize, and with
 * "run" also loads the object, sets .rodata nr, test-runs program "sum" and prints the
 * resulting .bss value.  Used by tests/test_workflow_resize.py to compare ebee with it.
 *   gcc -O2 -o libbpf_resize libbpf_resize.c -lbpf
 *   libbpf_resize OBJ MAP SIZE [NR run]                                                */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_WARN)
		return vfprintf(stdout, fmt, args) * 0;	/* warnings are part of the answer */
	return 0;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_map *map;
	const struct btf *btf;
	size_t sz;
	int err;

	if (argc < 4)
		return 2;
	libbpf_set_print(quiet);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		return 1;
	map = bpf_object__find_map_by_name(obj, argv[2]);
	if (!map)
		return 1;
	err = bpf_map__set_value_size(map, strtoul(argv[3], NULL, 0));
	printf("rc %d\nvalue_size %u\nbtf_value_type_id %u\n", err, bpf_map__value_size(map),
	       bpf_map__btf_value_type_id(map));
	btf = bpf_object__btf(obj);
	printf("types %u\n", btf__type_cnt(btf));
	if (bpf_map__btf_value_type_id(map)) {
		const struct btf_type *ds = btf__type_by_id(btf, bpf_map__btf_value_type_id(map));
		const struct btf_var_secinfo *v = btf_var_secinfos(ds);

		printf("datasec %s size %u\n", btf__name_by_offset(btf, ds->name_off), ds->size);
		for (int i = 0; i < btf_vlen(ds); i++, v++) {
			const struct btf_type *var = btf__type_by_id(btf, v->type);
			const struct btf_type *t = btf__type_by_id(btf, var->type);

			printf("var %s offset %u size %u type %u", btf__name_by_offset(btf, var->name_off),
			       v->offset, v->size, var->type);
			if (btf_is_array(t))
				printf(" array of %u nelems %u index %u", btf_array(t)->type,
				       btf_array(t)->nelems, btf_array(t)->index_type);
			printf("\n");
		}
	}
	const unsigned char *init = bpf_map__initial_value(map, &sz);
	printf("initial");
	for (size_t i = 0; init && i < sz; i++)
		printf("%s%02x", i ? "" : " ", init[i]);
	printf("\n");
	if (argc >= 6 && !strcmp(argv[5], "run")) {
		struct bpf_map *ro = bpf_object__find_map_by_name(obj, ".rodata");
		unsigned int nr = strtoul(argv[4], NULL, 0);
		unsigned char pkt[64] = {0}, bss[64];
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt));
		unsigned int zero = 0;

		bpf_map__set_initial_value(ro, &nr, sizeof(nr));
		err = bpf_object__load(obj);
		printf("load %d\n", err);
		if (err)
			return 0;
		err = bpf_prog_test_run_opts(bpf_program__fd(bpf_object__find_program_by_name(obj, "sum")), &opts);
		printf("run %d retval %u\n", err, opts.retval);
		bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(obj, ".bss")), &zero, bss);
		printf("bss");
		for (size_t i = 0; i < 16; i++)
			printf("%s%02x", i ? "" : " ", bss[i]);
		printf("\n");
	}
	bpf_object__close(obj);
	return 0;
}
