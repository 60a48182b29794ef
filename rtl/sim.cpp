// The C++ side of the CV32E40P harness: loads an ELF into the RAM of mmio.h, drives the core's
// instruction and data ports (OBI) with a memory of configurable wait states, handles the MMIO
// registers, and stops on exit, on a trap, on an access outside RAM and MMIO, or at a cycle limit.
//
// Usage: sim PROGRAM.elf MAX_CYCLES WAIT_STATES
// The program's output goes to standard output; the last line on standard error says how the run
// ended, for src/rtl/run.rs to parse:
//   qsearch-rtl exit CODE CYCLES INSTRUCTIONS   (CODE as 32 unsigned bits; mcycle and minstret
//                                               as the program reported them)
//   qsearch-rtl trap MCAUSE MEPC
//   qsearch-rtl limit SIMULATED_CYCLES
//   qsearch-rtl bad-access ADDRESS
//   qsearch-rtl bad-elf REASON
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "Vqsearch_tb.h"
#include "mmio.h"
#include "verilated.h"

namespace {

std::vector<uint8_t> ram(RTL_RAM_SIZE, 0);

bool in_ram(uint32_t addr) { return addr - RTL_RAM_BASE < RTL_RAM_SIZE - 3; }

uint32_t le32(const std::vector<uint8_t>& b, size_t at) {
  return b[at] | b[at + 1] << 8 | b[at + 2] << 16 | uint32_t(b[at + 3]) << 24;
}

uint16_t le16(const std::vector<uint8_t>& b, size_t at) { return b[at] | b[at + 1] << 8; }

// Loads the PT_LOAD segments of a little-endian ELF32 RISC-V executable into RAM (zeroing what
// the file does not fill); returns the entry point or an error.
std::string load_elf(const char* path, uint32_t& entry) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return "cannot open the file";
  std::vector<uint8_t> elf((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (elf.size() < 52 || std::memcmp(elf.data(), "\x7f" "ELF", 4) != 0) return "not an ELF file";
  if (elf[4] != 1 || elf[5] != 1) return "not a little-endian 32-bit ELF";
  if (le16(elf, 18) != 243) return "not a RISC-V executable";
  entry = le32(elf, 24);
  uint32_t phoff = le32(elf, 28);
  uint16_t phentsize = le16(elf, 42), phnum = le16(elf, 44);
  if (phnum == 0) return "no program headers";
  if (phentsize < 32 || uint64_t(phoff) + uint64_t(phnum) * phentsize > elf.size())
    return "program headers outside the file";
  for (unsigned i = 0; i < phnum; i++) {
    size_t ph = phoff + size_t(i) * phentsize;
    if (le32(elf, ph) != 1) continue;  // PT_LOAD only
    uint32_t offset = le32(elf, ph + 4), paddr = le32(elf, ph + 12);
    uint32_t filesz = le32(elf, ph + 16), memsz = le32(elf, ph + 20);
    if (filesz > memsz || uint64_t(offset) + filesz > elf.size()) return "a segment outside the file";
    if (memsz == 0) continue;
    if (paddr < RTL_RAM_BASE || uint64_t(paddr) + memsz > uint64_t(RTL_RAM_BASE) + RTL_RAM_SIZE)
      return "a segment outside RAM (" + std::to_string(RTL_RAM_SIZE >> 20) + " MiB at 0x1c000000)";
    std::memcpy(&ram[paddr - RTL_RAM_BASE], &elf[offset], filesz);
    std::memset(&ram[paddr - RTL_RAM_BASE + filesz], 0, memsz - filesz);
  }
  if (!in_ram(entry)) return "the entry point is outside RAM";
  return "";
}

// One OBI port's memory side: a request is granted after WAIT_STATES cycles and answered (rvalid
// with its read data) in the cycle after its grant.
struct Port {
  unsigned waited = 0;
  bool answer = false;
  uint32_t rdata = 0;

  // Grants now (in the clock's low phase, after the core raised req) or makes the request wait.
  bool grant(bool req, unsigned wait_states) {
    if (!req) return false;
    if (waited < wait_states) {
      waited++;
      return false;
    }
    waited = 0;
    return true;
  }
};

enum class End { Running, Exit, Trap, BadAccess };

struct Mmio {
  uint32_t cycles[2] = {0, 0}, instret[2] = {0, 0}, trap_pc = 0, value = 0;
  End end = End::Running;

  void write(uint32_t offset, uint32_t data) {
    switch (offset) {
      case RTL_MMIO_PUTCHAR: std::putchar(int(data & 0xff)); break;
      case RTL_MMIO_CYCLES: cycles[0] = data; break;
      case RTL_MMIO_CYCLESH: cycles[1] = data; break;
      case RTL_MMIO_INSTRET: instret[0] = data; break;
      case RTL_MMIO_INSTRETH: instret[1] = data; break;
      case RTL_MMIO_TRAP_PC: trap_pc = data; break;
      case RTL_MMIO_TRAP_CAUSE: value = data; end = End::Trap; break;
      case RTL_MMIO_EXIT: value = data; end = End::Exit; break;
      default: value = RTL_MMIO_BASE + offset; end = End::BadAccess;
    }
  }
};

uint64_t join(const uint32_t words[2]) { return uint64_t(words[1]) << 32 | words[0]; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s PROGRAM.elf MAX_CYCLES WAIT_STATES\n", argv[0]);
    return 2;
  }
  uint64_t max_cycles = std::strtoull(argv[2], nullptr, 10);
  unsigned wait_states = unsigned(std::strtoul(argv[3], nullptr, 10));
  uint32_t entry = 0;
  std::string error = load_elf(argv[1], entry);
  if (!error.empty()) {
    std::fprintf(stderr, "qsearch-rtl bad-elf %s\n", error.c_str());
    return 1;
  }

  VerilatedContext context;
  Vqsearch_tb tb{&context};
  Port instr, data;
  Mmio mmio;
  tb.boot_addr_i = entry;
  tb.instr_gnt_i = tb.instr_rvalid_i = tb.data_gnt_i = tb.data_rvalid_i = 0;
  // The core gates its clock until fetch is enabled, which happens only after a reset: start with
  // rst_ni high (so the initial state settles), drop it, then raise it again.
  for (int cycle = 0; cycle < 10; cycle++) {
    tb.rst_ni = cycle < 2 || cycle >= 7;
    tb.clk_i = 0;
    tb.eval();
    tb.clk_i = 1;
    tb.eval();
  }

  uint64_t cycle = 0;
  for (; cycle < max_cycles && mmio.end == End::Running; cycle++) {
    tb.clk_i = 0;
    tb.instr_rvalid_i = instr.answer;
    tb.instr_rdata_i = instr.rdata;
    tb.data_rvalid_i = data.answer;
    tb.data_rdata_i = data.rdata;
    tb.eval();
    bool instr_granted = instr.grant(tb.instr_req_o, wait_states);
    bool data_granted = data.grant(tb.data_req_o, wait_states);
    tb.instr_gnt_i = instr_granted;
    tb.data_gnt_i = data_granted;
    tb.eval();

    instr.answer = instr_granted;
    if (instr_granted) {
      uint32_t addr = tb.instr_addr_o & ~3u;
      if (!in_ram(addr)) {
        mmio.value = addr;
        mmio.end = End::BadAccess;
      } else {
        instr.rdata = le32(ram, addr - RTL_RAM_BASE);
      }
    }
    data.answer = data_granted;
    if (data_granted) {
      uint32_t addr = tb.data_addr_o & ~3u;
      data.rdata = 0;
      if (in_ram(addr)) {
        uint8_t* word = &ram[addr - RTL_RAM_BASE];
        if (tb.data_we_o) {
          for (int byte = 0; byte < 4; byte++)
            if (tb.data_be_o >> byte & 1) word[byte] = uint8_t(tb.data_wdata_o >> 8 * byte);
        } else {
          data.rdata = le32(ram, addr - RTL_RAM_BASE);
        }
      } else if (tb.data_we_o && addr - RTL_MMIO_BASE <= RTL_MMIO_EXIT) {
        mmio.write(addr - RTL_MMIO_BASE, tb.data_wdata_o);
      } else {
        mmio.value = addr;
        mmio.end = End::BadAccess;
      }
    }
    tb.clk_i = 1;
    tb.eval();
  }
  tb.final();
  std::fflush(stdout);

  switch (mmio.end) {
    case End::Exit:
      std::fprintf(stderr, "qsearch-rtl exit %u %llu %llu\n", mmio.value,
                   (unsigned long long)join(mmio.cycles), (unsigned long long)join(mmio.instret));
      return 0;
    case End::Trap:
      std::fprintf(stderr, "qsearch-rtl trap %u %u\n", mmio.value, mmio.trap_pc);
      return 1;
    case End::BadAccess:
      std::fprintf(stderr, "qsearch-rtl bad-access %u\n", mmio.value);
      return 1;
    case End::Running:
      std::fprintf(stderr, "qsearch-rtl limit %llu\n", (unsigned long long)cycle);
      return 1;
  }
  return 1;
}
