// Case-file reading and result writing of the simulation driver (case_io.h).
#include "case_io.h"

#include <cstdlib>
#include <cstring>

namespace edlm_sim {
namespace {

[[noreturn]] void malformed(const std::string& why) {
  std::fprintf(stderr, "edlm_sim: malformed case file: %s\n", why.c_str());
  std::exit(2);
}

bool read_line(std::FILE* in, std::string* line) {
  line->clear();
  int ch;
  while ((ch = std::fgetc(in)) != EOF && ch != '\n') line->push_back(static_cast<char>(ch));
  return ch != EOF || !line->empty();
}

}  // namespace

Buffer Buffer::allocate(size_t nbytes, int fill) {
  void* p = nullptr;
  if (posix_memalign(&p, 64, nbytes == 0 ? 1 : nbytes) != 0) malformed("out of memory");
  std::memset(p, fill, nbytes == 0 ? 1 : nbytes);
  Buffer b;
  b.data = std::shared_ptr<unsigned char>(static_cast<unsigned char*>(p), std::free);
  b.nbytes = nbytes;
  return b;
}

int64_t Case::i(const std::string& key) const {
  const auto it = ints.find(key);
  if (it == ints.end()) malformed("case " + name + " has no integer " + key);
  return it->second;
}
int64_t Case::i(const std::string& key, int64_t fallback) const {
  const auto it = ints.find(key);
  return it == ints.end() ? fallback : it->second;
}
double Case::f(const std::string& key) const {
  const auto it = floats.find(key);
  if (it == floats.end()) malformed("case " + name + " has no float " + key);
  return it->second;
}
const Buffer& Case::array(const std::string& key) const {
  const auto it = arrays.find(key);
  if (it == arrays.end()) malformed("case " + name + " has no array " + key);
  return it->second;
}

bool read_case(std::FILE* in, Case* c) {
  std::string line;
  if (!read_line(in, &line)) return false;
  if (line == "EDLMSIM1" && !read_line(in, &line)) return false;
  char name[512], op[128];
  if (std::sscanf(line.c_str(), "case %511s %127s", name, op) != 2) malformed("expected 'case NAME OP', got " + line);
  *c = Case{};
  c->name = name;
  c->op = op;
  while (read_line(in, &line)) {
    if (line == "end") return true;
    char key[256], value[128];
    unsigned long long nbytes = 0;
    if (line.rfind("i ", 0) == 0 && std::sscanf(line.c_str(), "i %255s %127s", key, value) == 2) {
      c->ints[key] = std::strtoll(value, nullptr, 10);
    } else if (line.rfind("f ", 0) == 0 && std::sscanf(line.c_str(), "f %255s %127s", key, value) == 2) {
      c->floats[key] = std::strtod(value, nullptr);
    } else if (line.rfind("a ", 0) == 0 && std::sscanf(line.c_str(), "a %255s %llu", key, &nbytes) == 2) {
      Buffer b = Buffer::allocate(nbytes, 0);
      if (std::fread(b.data.get(), 1, nbytes, in) != nbytes || std::fgetc(in) != '\n') malformed("short array " + std::string(key));
      c->arrays[key] = b;
    } else {
      malformed("bad line in case " + c->name + ": " + line);
    }
  }
  malformed("case " + c->name + " has no 'end'");
}

void write_result(std::FILE* out, const Case& c, const Result& r) {
  std::fprintf(out, "case %s %s\n", c.name.c_str(), r.status.c_str());
  for (const auto& [key, b] : r.arrays) {
    std::fprintf(out, "a %s %zu\n", key.c_str(), b.nbytes);
    std::fwrite(b.data.get(), 1, b.nbytes, out);
    std::fputc('\n', out);
  }
  std::fputs("end\n", out);
}

}  // namespace edlm_sim
