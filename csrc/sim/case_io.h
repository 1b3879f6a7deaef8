// The case files of the simulation driver: what tests/cuda_sim.py writes (op inputs as
// raw tensor storage plus integer / float parameters) and reads back (output arrays).
//
//   EDLMSIM1\n
//   case <name> <op>\n
//   i <key> <int64>\n            an integer parameter
//   f <key> <float>\n            a float parameter (strtod syntax: hex floats, inf, nan)
//   a <key> <nbytes>\n<bytes>\n  an array (a tensor's whole storage; its offset and
//                                strides in elements come as i <key>_offset, ...)
//   end\n
// Results: "case <name> ok" or "case <name> rejected <message>", then the output arrays
// ("a <key> <nbytes>" + bytes), then "end".
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace edlm_sim {

// Exactly nbytes of heap memory (so AddressSanitizer catches the first byte past it),
// 64-byte aligned like a CUDA allocation.
struct Buffer {
  std::shared_ptr<unsigned char> data;
  size_t nbytes = 0;
  static Buffer allocate(size_t nbytes, int fill);
};

struct Case {
  std::string name, op;
  std::map<std::string, int64_t> ints;
  std::map<std::string, double> floats;
  std::map<std::string, Buffer> arrays;

  int64_t i(const std::string& key) const;
  int64_t i(const std::string& key, int64_t fallback) const;
  double f(const std::string& key) const;
  bool has(const std::string& key) const { return arrays.count(key) != 0; }
  // The array `key` at its element offset (i <key>_offset), as T*.
  template <typename T>
  T* at(const std::string& key) const {
    return reinterpret_cast<T*>(array(key).data.get()) + i(key + "_offset", 0);
  }
  // Raw storage of `key` at a byte offset of offset * elem_size.
  void* at_bytes(const std::string& key, size_t elem_size) const {
    return array(key).data.get() + i(key + "_offset", 0) * static_cast<int64_t>(elem_size);
  }
  const Buffer& array(const std::string& key) const;
};

struct Result {
  std::string status = "ok";  // or "rejected <message>"
  std::vector<std::pair<std::string, Buffer>> arrays;
  // A fresh output array of n elements of T, pre-filled with a garbage byte so that an
  // element the kernel never writes shows in the comparison.
  template <typename T>
  T* output(const std::string& key, int64_t n) {
    arrays.emplace_back(key, Buffer::allocate(static_cast<size_t>(n) * sizeof(T), 0xab));
    return reinterpret_cast<T*>(arrays.back().second.data.get());
  }
};

// Reads the next case; false at the end of the file. Exits with status 2 on a malformed file.
bool read_case(std::FILE* in, Case* c);
void write_result(std::FILE* out, const Case& c, const Result& r);

// The op runners (ops_*.cpp): build the launch problem from the case, run the shared
// launch function on the simulation, return the outputs.
Result run_sample(const Case& c);               // masked_sample / sample_proposals
Result run_importance_resample(const Case& c);
Result run_unmask(const Case& c);
Result run_unmask_confident(const Case& c);

}  // namespace edlm_sim
