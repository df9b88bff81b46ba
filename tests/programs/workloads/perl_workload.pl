# perl_workload.pl - the perl workload of the program tests.
#
# Hashes, regexes, sorts, string building and splits: perl allocates its
# scalars, hash buckets and regex state through the C allocator, so this runs
# a lot of small mallocs/reallocs.  Deterministic: a self-contained linear
# congruential generator (not perl's rand, whose algorithm may change), sorted
# key order, and run_program.sh fixes PERL_HASH_SEED.  Prints counts and an
# MD5 of everything built.
use strict;
use warnings;
use Digest::MD5;

my $state = 12345;
sub next_rand {            # 31-bit LCG: same numbers on every perl build
    $state = ($state * 1103515245 + 12345) % 2147483648;
    return int($state / 65536);   # the low bits of an LCG cycle quickly
}

sub random_word {
    my $len = 3 + next_rand() % 10;
    return join '', map { chr(ord('a') + next_rand() % 26) } 1 .. $len;
}

my $md5 = Digest::MD5->new;

# 1. A word-frequency hash with many keys.
my @words = map { random_word() } 1 .. 80000;
my %count;
$count{ substr($_, 0, 3) }++ for @words;
my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 9];
print "words ", scalar(@words), " prefixes ", scalar(keys %count), "\n";
print "top ", join(',', map { "$_=$count{$_}" } @top), "\n";
$md5->add(join ',', @top);

# 2. Regex rewriting of a growing text (string reallocs).
my $text = '';
for my $i (0 .. $#words) {
    (my $w = $words[$i]) =~ s/([aeiou])([^aeiou]+)/\U$2\E$1/g;
    $text .= $w . (($i % 17) ? ' ' : "\n");
}
my @lines = split /\n/, $text;
my $vowels = () = $text =~ /[aeiou]/g;
print "text length ", length($text), " lines ", scalar(@lines), " vowels $vowels\n";
$md5->add($text);

# 3. Hash of arrays of hashes, then a multi-key sort.
my %groups;
for my $i (0 .. 29999) {
    my $w = $words[$i];
    push @{ $groups{ length $w } }, { word => $w, n => $i, rev => scalar reverse $w };
}
my @sorted;
for my $len (sort { $a <=> $b } keys %groups) {
    push @sorted, map { "$len:$_->{rev}:$_->{n}" }
                  sort { $a->{rev} cmp $b->{rev} || $a->{n} <=> $b->{n} } @{ $groups{$len} };
}
print "groups ", scalar(keys %groups), " sorted ", scalar(@sorted), " first $sorted[0] last $sorted[-1]\n";
$md5->add(join "\n", @sorted);

# 4. Delete half the keys and re-add them: hash shrink/grow churn.
my @keys = sort keys %count;
delete $count{ $keys[$_] } for grep { $_ % 2 } 0 .. $#keys;
$count{"$_-x"} = length $_ for @keys;
print "after churn ", scalar(keys %count), "\n";
$md5->add(join ',', map { "$_=$count{$_}" } sort keys %count);

print "digest ", $md5->hexdigest, "\n";
