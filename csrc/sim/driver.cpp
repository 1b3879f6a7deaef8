// edlm_sim: the CPU simulation of the CUDA execution model, as a command.
//
//   edlm_sim run CASES OUT [--order forward|reverse|random] [--seed N] [--poison 0xNN]
//       runs every case of the case file CASES (tests/cuda_sim.py writes them) through the
//       CUDA launch logic and kernels, writes the outputs to OUT
//   edlm_sim selftest NAME [options]   one planted-bug or control kernel (selftest.cpp)
//   edlm_sim list-selftests            their names and detectors
// Exit status: 0 done; 2 bad usage or case file; 3 an error the simulation found (the
// message on stderr names the kernel, block, thread and source line); 4 a self-test's
// kernel gave a wrong result; sanitizer reports end the process with their own status.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "case_io.h"
#include "runtime.h"
#include "selftest.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: edlm_sim run CASES OUT [--order forward|reverse|random] [--seed N] [--poison 0xNN]\n"
               "       edlm_sim selftest NAME [options] | edlm_sim list-selftests\n");
  return 2;
}

bool parse_options(int argc, char** argv, int first) {
  auto& o = edlm_sim::options();
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (a == "--order") {
      if (!edlm_sim::parse_order(v, &o.order)) return false;
    } else if (a == "--seed") {
      o.seed = std::strtoull(v, nullptr, 0);
    } else if (a == "--poison") {
      o.poison = static_cast<int>(std::strtol(v, nullptr, 0)) & 0xff;
    } else {
      return false;
    }
  }
  return true;
}

edlm_sim::Result run_case(const edlm_sim::Case& c) {
  if (c.op == "sample") return edlm_sim::run_sample(c);
  if (c.op == "importance_resample") return edlm_sim::run_importance_resample(c);
  if (c.op == "unmask") return edlm_sim::run_unmask(c);
  if (c.op == "unmask_confident") return edlm_sim::run_unmask_confident(c);
  std::fprintf(stderr, "edlm_sim: unknown op %s in case %s\n", c.op.c_str(), c.name.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string cmd = argv[1];
  if (cmd == "list-selftests") {
    edlm_sim::list_selftests();
    return 0;
  }
  if (cmd == "selftest") {
    if (argc < 3 || !parse_options(argc, argv, 3)) return usage();
    return edlm_sim::run_selftest(argv[2]);
  }
  if (cmd != "run" || argc < 4 || !parse_options(argc, argv, 4)) return usage();
  std::FILE* in = std::fopen(argv[2], "rb");
  std::FILE* out = std::fopen(argv[3], "wb");
  if (!in || !out) {
    std::fprintf(stderr, "edlm_sim: cannot open %s or %s\n", argv[2], argv[3]);
    return 2;
  }
  std::fputs("EDLMSIM1\n", out);
  edlm_sim::Case c;
  int n = 0;
  while (edlm_sim::read_case(in, &c)) {
    std::fprintf(stderr, "edlm_sim: case %s\n", c.name.c_str());  // the last one names a crash's case
    write_result(out, c, run_case(c));
    ++n;
  }
  std::fclose(in);
  if (std::fclose(out) != 0) return 2;
  const auto& k = edlm_sim::counters();
  std::fprintf(stderr, "edlm_sim: %d cases done (%llu blocks, %llu threads, %llu fiber switches, %llu barriers, %llu warp collectives)\n",
               n, static_cast<unsigned long long>(k.blocks), static_cast<unsigned long long>(k.threads),
               static_cast<unsigned long long>(k.switches), static_cast<unsigned long long>(k.barriers),
               static_cast<unsigned long long>(k.collectives));
  return 0;
}
