// gxx_program.cpp - the input of the g++ program test.
//
// Compiled by a g++ with the allocator under test preloaded: cc1plus
// allocates through operator new/delete and malloc, and templates from
// <map>, <regex>, <unordered_map> and <algorithm> give it a lot to
// instantiate.  The compiled program is deterministic and prints a digest.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

struct Lcg {                       // fixed sequence, independent of libstdc++
    std::uint32_t state;
    std::uint32_t next() { state = state * 1664525u + 1013904223u; return state >> 8; }
};

std::string make_word(Lcg &rng)
{
    std::string word(3 + rng.next() % 8, 'a');
    for (char &c : word)
        c = static_cast<char>('a' + rng.next() % 26);
    return word;
}

template <typename Map>
std::uint64_t digest_of(const Map &map)
{
    std::uint64_t h = 1469598103934665603ull;
    for (const auto &[key, value] : map) {
        for (char c : key)
            h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
        h = (h ^ value) * 1099511628211ull;
    }
    return h;
}

} // namespace

int main()
{
    Lcg rng{42};
    std::vector<std::unique_ptr<std::string>> words;
    for (int i = 0; i < 20000; i++)
        words.push_back(std::make_unique<std::string>(make_word(rng)));

    std::unordered_map<std::string, int> counts;
    for (const auto &w : words)
        counts[w->substr(0, 2)]++;
    std::map<std::string, int> ordered(counts.begin(), counts.end());

    std::regex vowel_run("[aeiou]+");
    std::ostringstream joined;
    for (std::size_t i = 0; i < words.size(); i += 7)
        joined << std::regex_replace(*words[i], vowel_run, "_") << ' ';

    std::sort(words.begin(), words.end(),
              [](const auto &a, const auto &b) { return *a < *b; });
    std::cout << "words " << words.size() << " prefixes " << ordered.size()
              << " first " << *words.front() << " last " << *words.back() << '\n'
              << "joined " << joined.str().size() << " digest " << std::hex
              << digest_of(ordered) << '\n';
    return 0;
}
