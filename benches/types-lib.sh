# The throughput tests of types.sh and types-ab.sh (sourced by both).

# prep TEST: what fills the key a pop or read test works on
# (redis-benchmark's own mylist / myset / myhash), so pops never meet an
# empty collection: a test, how many requests, the -r range; count: how
# many requests (pops stay below what the fill added).
prep() {
    case "$1" in
    lpop | rpop | lrange_100) echo "lpush 300000 100000" ;;
    hget) echo "hset 300000 100000" ;;
    sismember) echo "sadd 300000 100000" ;;
    hget_small) echo "hset_small 300000 10000" ;;
    sismember_small) echo "sadd_small 300000 10000" ;;
    # The pop tests get a bigger collection (about 450,000 members), so
    # that 300,000 pops run long enough to time.
    spop) echo "sadd 600000 1000000" ;;
    zpopmin) echo "zadd 600000 1000000" ;;
    zscore | zrange_10) echo "zadd 300000 100000" ;;
    *) echo "" ;;
    esac
}
# what TEST: redis-benchmark's arguments for it (a built-in -t test or a
# command; no argument has a space).
what() {
    case "$1" in
    zscore) echo "ZSCORE myzset element:__rand_int__" ;;
    zrange_10) echo "ZRANGE myzset 0 9" ;;
    hget) echo "HGET myhash element:__rand_int__" ;;
    sismember) echo "SISMEMBER myset element:__rand_int__" ;;
    # Every __rand_int__ is drawn apart: 10,000 keys, ~30 fields each.
    # It is 12 zero-padded digits, not an integer by Redis' rule: a 1
    # before it makes the set members integers (intsets, 8 bytes wide).
    hset_small) echo "HSET h:__rand_int__ field:__rand_int__ value:0" ;;
    hget_small) echo "HGET h:__rand_int__ field:__rand_int__" ;;
    sadd_small) echo "SADD s:__rand_int__ 1__rand_int__" ;;
    sismember_small) echo "SISMEMBER s:__rand_int__ 1__rand_int__" ;;
    *) echo "-t $1" ;;
    esac
}
range() {
    case "$1" in
    *_small) echo 10000 ;;
    *) echo 100000 ;;
    esac
}
