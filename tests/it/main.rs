mod destination;
