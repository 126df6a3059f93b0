/* prunequant command-line program: dispatches to one command per file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int pq_cli_eval(int argc, char **argv);
int pq_cli_sweep(int argc, char **argv);
int pq_cli_recommend(int argc, char **argv);
int pq_cli_report(int argc, char **argv);
int pq_cli_layer(int argc, char **argv);
int pq_cli_tasks(int argc, char **argv);
int pq_cli_compress(int argc, char **argv);
int pq_cli_allocate(int argc, char **argv);

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"info", cli_info, "architecture, dimensions, parameters, bytes, dtypes of a model"},
    {"tokenize", cli_tokenize, "print the token ids of a text"},
    {"detokenize", cli_detokenize, "print the text of token ids"},
    {"generate", cli_generate, "generate text (greedy or sampled)"},
    {"ppl", cli_ppl, "perplexity of a text file (gptq or llamacpp protocol)"},
    {"convert", cli_convert, "write a model as a Hugging Face folder or a GGUF file"},
    {"compress", pq_cli_compress, "compress a whole model (layer-wise pruning + quantization)"},
    {"allocate", pq_cli_allocate, "per-linear recipes under a byte budget (a recipe file for compress)"},
    {"layer", pq_cli_layer, "compress one weight matrix given its Hessian (.npy)"},
    {"eval", pq_cli_eval, "benchmarks, KL divergence to a base model, retention metrics"},
    {"sweep", pq_cli_sweep, "compress + evaluate a grid of recipes into an SQLite database (resumable)"},
    {"recommend", pq_cli_recommend, "best configuration of a sweep database, as a compress recipe"},
    {"report", pq_cli_report, "self-contained HTML report (SVG charts) of a sweep database"},
    {"tasks", pq_cli_tasks, "list evaluation tasks; make a cloze task from a text"},
};

static void usage(FILE *f) {
    fprintf(f, "prunequant %s: joint pruning + quantization of LLMs\n\nusage: prunequant COMMAND [options]\n\n",
            PQ_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nModels: llama2.c .bin, GGUF (v2/v3), Hugging Face folders (config.json + safetensors).\n"
               "Run 'prunequant COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
    /* Idle OpenMP workers must sleep, not spin: on small machines (2 vCPUs, often one core's
     * two hyperthreads) a spinning worker halves the speed of the serial parts and of BLAS.
     * libgomp reads this once at load, so set it and start again. Not for generate: decoding
     * runs a few parallel products per layer microseconds apart, and waking sleeping workers
     * for each cost it 10-15% (bench_decode, 2 vCPUs); libgomp's default spins briefly. */
    if (!getenv("OMP_WAIT_POLICY") && !(argc > 1 && !strcmp(argv[1], "generate"))) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        execv("/proc/self/exe", argv);
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("prunequant %s\n", PQ_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "prunequant: unknown command '%s' (see 'prunequant --help')\n", argv[1]);
    return 2;
}
